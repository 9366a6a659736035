"""A site under privacy = "distributed": one step a round, its own public numbers, no overrun.

The test plays the server over the memory transport: it opens rounds whose
announced distributed-DP numbers differ from the site's own federation file
(a smaller expected batch size, a lower threshold, more or fewer colluders,
another sample rate or μ, none at all). The site must refuse each before it
reserves anything in its ledger and before anything leaves. A local-epochs
loop (a second optimizer step, a second batch) must stop with one clear
error, the round charged once as the one release it admitted, and no masked
input sent. Removing a check turns its case red.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.config import (
    DistributedConfig,
    DPConfig,
    FederationConfig,
    RoundConfig,
    TrainConfig,
)
from securefl.dp import SkellamEvent
from securefl.errors import ConfigError, ProtocolError, SecureFLError
from securefl.hazmat.sign import SigningKey
from securefl.params import ParamSpec, model_vector
from securefl.runtime import messages as m
from securefl.runtime._distributed import CLIP_MARGIN, DistributedPlan, distributed_site_mode
from securefl.runtime.global_model import PlainGlobalModel
from securefl.runtime.site import Site
from securefl.secagg import MaskConfig
from securefl.transport import MemoryHub
from securefl.wire import SERVER, Envelope, pack

N_EXAMPLES = 40
ROSTER = ("a", "b", "c")
CLIP = 0.5


def _config(threshold: int | None = 3) -> FederationConfig:
    return FederationConfig(
        name="f",
        privacy="distributed",
        distributed=DistributedConfig(sample_rate=0.5, records=3 * N_EXAMPLES, scale_bits=10),
        dp=DPConfig(epsilon=2.0, delta=1e-5, max_grad_norm=CLIP),
        train=TrainConfig(learning_rate=1.0),
        rounds=RoundConfig(max_rounds=4, min_sites=2, stage_timeout_seconds=5),
        mask=MaskConfig(clip=1.0, threshold=threshold),
    )


def _site(tmp_path, config=None):
    config = config or _config()
    keys = {n: SigningKey.generate() for n in ROSTER}
    identity = {n: k.public_bytes() for n, k in keys.items()}
    plan = DistributedPlan.from_config(config, dimension=8, federation_size=len(ROSTER))
    hub = MemoryHub()
    server = hub.connect(SERVER)
    site = Site(
        name="a",
        federation="f",
        transport=hub.connect("a"),
        mode=distributed_site_mode(
            plan, name="a", signing_key=keys["a"], identity_keys=identity, state_dir=tmp_path
        ),
        dp=config.dp,
        train=config.train,
        rounds=config.rounds,
        state_dir=tmp_path,
        roster=ROSTER,
        distributed=plan,
    )
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))  # 8 parameters
    data = TensorDataset(torch.randn(N_EXAMPLES, 3), torch.randint(0, 2, (N_EXAMPLES,)))
    model, opt, _loader = site.privatize(
        model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(data, batch_size=1)
    )
    return server, site, model, opt, plan


def _open(server, model, config, rnd=1):
    spec = ParamSpec.from_state_dict(model._module.state_dict())
    fields = {
        "cohort": list(ROSTER),
        "model": PlainGlobalModel(model_vector(model, spec)).payload(),
        "spec": spec.to_dict(),
        "max_weight": 1000.0,
        "min_sites": 2,
        "run": "0f",
        "config": config,
    }
    server.send(
        Envelope(
            federation="f",
            round=rnd,
            stage=m.ROUND_START,
            sender=SERVER,
            receiver="a",
            payload=pack(fields),
        )
    )


def _stages(server):
    out = []
    while (env := server.receive(timeout=0.05)) is not None:
        out.append(env.stage)
    return out


def _step(model, opt, rnd):
    x, y = rnd.batch()
    opt.zero_grad()
    out = model(x)
    loss = nn.functional.cross_entropy(out, y) if len(y) else out.sum()
    loss.backward()
    opt.step()


def _announced(plan, **changes):
    return {"distributed": {**plan.announced(), **changes}}


BAD_ANNOUNCEMENTS = {
    "a smaller expected batch size": lambda p: _announced(
        p, expected_batch_size=p.expected_batch_size / 2
    ),
    "a larger expected batch size": lambda p: _announced(
        p, expected_batch_size=p.expected_batch_size * 2
    ),
    "a lower threshold": lambda p: _announced(p, threshold=2),
    "fewer colluders": lambda p: _announced(p, colluders=-1),
    "more colluders": lambda p: _announced(p, colluders=1),
    "a higher sample rate": lambda p: _announced(p, sample_rate=1.0),
    "a smaller mu": lambda p: _announced(p, mu_total=p.mu_total // 2),
    "another scale": lambda p: _announced(p, scale=p.scale * 2),
    "an unknown setting": lambda p: _announced(p, clip=10.0),
    "no distributed settings": lambda p: {},
    "distributed settings not a table": lambda p: {"distributed": 3},
}


@pytest.mark.parametrize("make", BAD_ANNOUNCEMENTS.values(), ids=BAD_ANNOUNCEMENTS.keys())
def test_a_server_announcing_other_numbers_is_refused_before_the_ledger(tmp_path, make):
    server, site, model, opt, plan = _site(tmp_path)
    _open(server, model, make(plan))
    with pytest.raises(ProtocolError):
        for rnd in site.rounds(model):
            _step(model, opt, rnd)
            rnd.submit()
    assert site.ledger.history() == []  # no reservation, nothing committed
    assert site.ledger.spent() == 0
    assert _stages(server) == [m.HELLO, m.BYE]  # nothing masked left the site


def test_a_local_site_refuses_a_distributed_announcement(tmp_path):
    """A site running local DP-SGD must not take a round the server says is distributed."""
    from securefl.aggregation import PlainMode

    hub = MemoryHub()
    server = hub.connect(SERVER)
    site = Site(
        name="a",
        federation="f",
        transport=hub.connect("a"),
        mode=PlainMode(),
        dp=DPConfig(epsilon=5.0, noise_multiplier=1.0, batch_size=8),
        train=TrainConfig(),
        rounds=RoundConfig(max_rounds=3, min_sites=2, stage_timeout_seconds=5),
        state_dir=tmp_path,
        roster=ROSTER,
    )
    model = nn.Sequential(nn.Linear(3, 2))
    data = TensorDataset(torch.randn(N_EXAMPLES, 3), torch.randint(0, 2, (N_EXAMPLES,)))
    model, _opt, _ = site.privatize(
        model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(data, batch_size=8)
    )
    plan = DistributedPlan.from_config(_config(), dimension=8, federation_size=3)
    _open(server, model, _announced(plan))
    with pytest.raises(ProtocolError, match="local"):
        list(site.rounds(model))
    assert site.ledger.history() == []


def test_the_sites_own_numbers_are_accepted_and_reserve_one_skellam_release(tmp_path):
    """The control: the same server announcing the site's own numbers gets a round."""
    server, site, model, _opt, plan = _site(tmp_path)
    _open(server, model, _announced(plan))
    rounds = site.rounds(model)
    rnd = next(rounds)
    (entry,) = site.ledger.history()
    assert entry.status == "pending"
    assert isinstance(entry.event, SkellamEvent)
    assert entry.event.steps == 1 and entry.event.sample_rate == plan.sample_rate
    assert entry.event.mu_total == plan.mu_total
    assert entry.event.shares == 3  # t = 3 of 3, c = 0: from the site's own mask settings
    assert rnd.number == 1
    rounds.close()


def test_a_second_optimizer_step_in_a_round_stops_the_loop_and_charges_once(tmp_path):
    server, site, model, opt, plan = _site(tmp_path)
    _open(server, model, _announced(plan))
    with pytest.raises(ConfigError, match="one DP-SGD step"):
        for rnd in site.rounds(model):
            _step(model, opt, rnd)
            opt.step()  # a local-epochs loop's next step
            rnd.submit()
    (entry,) = site.ledger.history()
    assert entry.status == "committed" and entry.event.steps == 1
    assert site.ledger.spent() == pytest.approx(site.ledger._epsilon([plan.event(3)]))
    stages = _stages(server)
    assert not any("masked" in s or "advertise" in s for s in stages), stages


def test_a_second_batch_in_a_round_is_refused(tmp_path):
    server, site, model, opt, plan = _site(tmp_path)
    _open(server, model, _announced(plan))
    with pytest.raises(ConfigError, match="one DP-SGD step"):
        for rnd in site.rounds(model):
            _step(model, opt, rnd)
            rnd.batch()
    (entry,) = site.ledger.history()
    assert entry.status == "committed"


def test_a_step_outside_a_round_is_refused(tmp_path):
    _server, site, model, opt, _plan = _site(tmp_path)
    x = torch.randn(4, 3)
    nn.functional.cross_entropy(model(x), torch.zeros(4, dtype=torch.long)).backward()
    with pytest.raises(ConfigError, match="outside a round"):
        opt.step()
    assert site.ledger.history() == []


def test_submit_before_the_step_is_refused(tmp_path):
    server, site, model, _opt, plan = _site(tmp_path)
    _open(server, model, _announced(plan))
    with pytest.raises(ConfigError, match=r"before optimizer\.step"):
        for rnd in site.rounds(model):
            rnd.batch()
            rnd.submit()


def test_each_examples_contribution_is_clipped_below_c(tmp_path):
    """The sum the site rounds: every example's gradient clipped to C·(1 − 2⁻²⁰)."""
    server, site, model, opt, plan = _site(tmp_path)
    _open(server, model, _announced(plan))
    rounds = site.rounds(model)
    rnd = next(rounds)
    x, y = rnd.batch()
    opt.zero_grad()
    (1e6 * nn.functional.cross_entropy(model(x * 100), y)).backward()  # huge gradients
    rows = site._dd._per_example(len(y))
    assert np.linalg.norm(rows, axis=1).max() > 1e3 * CLIP  # raw ones far above C
    opt.step()
    total = site._dd._sum
    assert np.linalg.norm(total) <= len(y) * CLIP * CLIP_MARGIN * (1 + 1e-12)
    norms = np.linalg.norm(rows, axis=1)
    clipped = rows * np.minimum(1.0, CLIP * CLIP_MARGIN / np.maximum(norms, 1e-300))[:, None]
    np.testing.assert_allclose(total, clipped.sum(axis=0), rtol=1e-12)
    rounds.close()


def test_a_batch_is_a_poisson_sample_at_the_federations_rate(tmp_path):
    from securefl.runtime._distributed_round import poisson_indices

    sizes = [poisson_indices(1000, 0.25).size for _ in range(200)]
    # mean 250, sd about 13.7: the mean of 200 draws lies within 5 sd / sqrt(200)
    assert abs(np.mean(sizes) - 250) < 5 * 13.7 / np.sqrt(200)
    assert np.std(sizes) == pytest.approx(np.sqrt(1000 * 0.25 * 0.75), rel=0.25)


def test_the_config_requires_mask_one_epoch_and_the_public_numbers():
    with pytest.raises(ConfigError, match="secure"):
        FederationConfig(
            privacy="distributed",
            secure="he",
            distributed=DistributedConfig(sample_rate=0.5, records=10),
        )
    with pytest.raises(ConfigError, match="local_epochs"):
        FederationConfig(
            privacy="distributed",
            distributed=DistributedConfig(sample_rate=0.5, records=10),
            train=TrainConfig(local_epochs=2),
        )
    with pytest.raises(ConfigError, match="sample_rate"):
        FederationConfig(privacy="distributed")
    with pytest.raises(ConfigError, match="privacy"):
        FederationConfig(privacy="central")
    assert FederationConfig().privacy == "local"


def test_the_server_divides_by_the_public_expected_batch_and_the_scale():
    """ĝ = Σ / (γ · B̄), then −lr · ĝ as the strategy's mean update (FedAvg: plain SGD)."""
    from securefl.runtime._distributed import DistributedStep
    from securefl.strategy.fedavg import FedAvg

    plan = DistributedPlan.from_config(_config(), dimension=8, federation_size=3)
    step = DistributedStep(FedAvg(server_lr=1.0), plan)
    params = np.arange(8, dtype=np.float64)
    total = np.full(8, 3.0 * plan.scale * plan.expected_batch_size)  # ĝ = 3 everywhere
    new = step.apply(params, total, 1)
    np.testing.assert_allclose(new, params - 1.0 * 3.0)
    assert step.round_config(1)["distributed"] == plan.announced()


def test_a_sites_budget_is_charged_the_central_epsilon_and_refuses_past_it(tmp_path):
    """μ is calibrated for rounds.max_rounds releases: that many fit, one more does not."""
    config = _config()
    _server, site, _model, _opt, plan = _site(tmp_path, config)
    events = [plan.event(3)] * config.rounds.max_rounds
    assert site.ledger._epsilon(events) <= config.dp.epsilon
    assert site.ledger._epsilon([*events, plan.event(3)]) > config.dp.epsilon
    with pytest.raises(SecureFLError):
        for i in range(config.rounds.max_rounds + 1):
            r = site.ledger.reserve(i + 1, plan.event(3), federation="f", run="r")
            site.ledger.commit(r, plan.event(3))
    assert site.ledger.spent() <= config.dp.epsilon


def test_a_federation_file_sets_privacy_and_its_public_numbers(tmp_path):
    from securefl.config import load_federation

    path = tmp_path / "fed.toml"
    path.write_text(
        '[federation]\nprivacy = "distributed"\n'
        "[distributed]\nsample_rate = 0.25\nrecords = 400\nscale_bits = 10\n",
        encoding="utf-8",
    )
    config = load_federation(path)
    assert config.privacy == "distributed"
    assert config.distributed.expected_batch_size == 100.0
    assert config.distributed.scale == 1024.0
    path.write_text('[federation]\nprivacy = "distributed"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"fed\.toml.*sample_rate"):
        load_federation(path)
    path.write_text("[distributed]\nrecords = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"distributed\.records"):
        load_federation(path)


@pytest.mark.parametrize(
    ("extra", "setting"),
    [
        ('[federation]\nsecure = "he"\n', "secure"),
        ('[federation]\nsecure = "plain"\n', "secure"),
        ("[train]\nlocal_epochs = 2\n", "train.local_epochs"),
        ('[strategy]\nname = "fedprox"\n', "strategy.name"),
    ],
    ids=["he", "plain", "local-epochs", "fedprox"],
)
def test_unsupported_combinations_with_distributed_are_one_line_naming_the_setting(
    tmp_path, extra, setting
):
    from securefl.config import load_federation

    body = "[distributed]\nsample_rate = 0.25\nrecords = 400\n"
    head = '[federation]\nprivacy = "distributed"\n'
    if extra.startswith("[federation]"):
        head = '[federation]\nprivacy = "distributed"\n' + extra.split("\n", 1)[1]
        extra = ""
    path = tmp_path / "fed.toml"
    path.write_text(head + body + extra, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_federation(path)
    message = str(info.value)
    assert "\n" not in message and setting in message
