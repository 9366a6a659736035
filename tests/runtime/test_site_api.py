"""The Site API against a hand-driven server: what a user's loop can and cannot do."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.aggregation import PlainMode
from securefl.config import DPConfig, RoundConfig, TrainConfig
from securefl.errors import ConfigError
from securefl.params import ParamSpec, model_vector
from securefl.runtime import messages as m
from securefl.runtime.global_model import PlainGlobalModel
from securefl.runtime.site import Site
from securefl.transport import MemoryHub
from securefl.wire import SERVER, Envelope


def _setup(tmp_path):
    hub = MemoryHub()
    server = hub.connect(SERVER)
    site = Site(
        name="a",
        federation="f",
        transport=hub.connect("a"),
        mode=PlainMode(),
        dp=DPConfig(epsilon=5.0, noise_multiplier=1.0, batch_size=8),
        train=TrainConfig(),
        rounds=RoundConfig(max_rounds=2, stage_timeout_seconds=5),
        state_dir=tmp_path,
    )
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    data = TensorDataset(torch.randn(32, 3), torch.randint(0, 2, (32,)))
    model, opt, loader = site.privatize(
        model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(data, batch_size=8)
    )
    return hub, server, site, model, opt, loader


def _start(model, max_weight=100.0, sender=SERVER, rnd=1):
    spec = ParamSpec.from_state_dict(model._module.state_dict())
    payload = m.RoundStart(
        cohort=("a", "b"),
        model=PlainGlobalModel(model_vector(model, spec)).payload(),
        spec=spec.to_dict(),
        max_weight=max_weight,
        min_sites=2,
        run="0f",
    ).to_bytes()
    return Envelope(
        federation="f", round=rnd, stage=m.ROUND_START, sender=sender, receiver="a", payload=payload
    )


def _finish(model):
    spec = ParamSpec.from_state_dict(model._module.state_dict())
    payload = m.Finish(
        model=PlainGlobalModel(model_vector(model, spec)).payload(), reason="done", rounds=1
    ).to_bytes()
    return Envelope(
        federation="f", round=1, stage=m.FINISH, sender=SERVER, receiver="a", payload=payload
    )


def _drain(server):
    out = []
    while (env := server.receive(timeout=0.05)) is not None:
        out.append(env)
    return out


def test_only_the_server_may_open_a_round(tmp_path):
    hub, server, site, model, _, _ = _setup(tmp_path)
    mallory = hub.connect("mallory")
    mallory.send(_start(model, sender="mallory"))
    server.send(_finish(model))
    assert list(site.rounds(model)) == []
    assert site.ledger.history() == []  # no privacy reserved for the forged round


def test_an_oversized_weight_is_refused_before_privacy_is_committed(tmp_path):
    # the site's 32 examples fit the bound; the loop then claims 50
    _, server, site, model, _opt, _loader = _setup(tmp_path)
    server.send(_start(model, max_weight=40.0))
    with pytest.raises(ConfigError, match="maximum weight"):
        for rnd in site.rounds(model):
            rnd.submit(num_examples=50)
    (entry,) = site.ledger.history()
    # counted as spent and never released; committed (not left pending) so that the
    # signed record the audit sees exists for every round the ledger charges
    assert entry.status == "committed" and site.ledger.spent() > 0
    stages = [e.stage for e in _drain(server)]
    assert stages == [m.HELLO, m.BYE]  # no update left the site


def test_leaving_the_loop_early_tells_the_server(tmp_path):
    _, server, site, model, _, _ = _setup(tmp_path)
    server.send(_start(model))
    for _rnd in site.rounds(model):
        break
    assert [e.stage for e in _drain(server)] == [m.HELLO, m.BYE]


def test_a_submitted_round_sends_report_then_update_and_spends_privacy(tmp_path):
    _, server, site, model, opt, loader = _setup(tmp_path)
    server.send(_start(model))
    rounds = site.rounds(model)
    rnd = next(rounds)
    for x, y in loader:
        opt.zero_grad()
        out = model(x)
        # Poisson sampling can draw an empty batch: it still takes its noisy step
        (nn.functional.cross_entropy(out, y) if len(y) else out.sum()).backward()
        opt.step()
    rnd.submit(num_examples=32, metrics={"val_accuracy": 0.5})
    stages = [e.stage for e in _drain(server)]
    assert stages == [m.HELLO, m.REPORT, "plain/update"]
    assert site.ledger.history()[0].status == "committed"
    assert 0 < (rnd.epsilon or 0) <= 5.0
    assert np.isfinite(site.ledger.spent())


@pytest.mark.parametrize("delta", [0.5, 1 / 32, 1 / 20])
def test_a_delta_not_below_one_over_n_is_refused_before_any_training(tmp_path, delta):
    # with δ ≥ 1/n, releasing one random record outright is (0, δ)-DP: ε would mean nothing
    hub = MemoryHub()
    site = Site(
        name="a",
        federation="f",
        transport=hub.connect("a"),
        mode=PlainMode(),
        dp=DPConfig(epsilon=1.0, delta=delta, batch_size=8),
        train=TrainConfig(),
        rounds=RoundConfig(max_rounds=2, stage_timeout_seconds=5),
        state_dir=tmp_path,
    )
    model = nn.Sequential(nn.Linear(3, 2))
    data = TensorDataset(torch.randn(32, 3), torch.randint(0, 2, (32,)))
    with pytest.raises(ConfigError, match=r"dp\.delta.*n = 32 records"):
        site.privatize(
            model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(data, batch_size=8)
        )
    assert site.private is None and site.ledger.history() == []


def test_a_delta_just_below_one_over_n_is_accepted(tmp_path):
    hub = MemoryHub()
    site = Site(
        name="a",
        federation="f",
        transport=hub.connect("a"),
        mode=PlainMode(),
        dp=DPConfig(epsilon=5.0, delta=1 / 33, noise_multiplier=1.0, batch_size=8),
        train=TrainConfig(),
        rounds=RoundConfig(max_rounds=2, stage_timeout_seconds=5),
        state_dir=tmp_path,
    )
    model = nn.Sequential(nn.Linear(3, 2))
    data = TensorDataset(torch.randn(32, 3), torch.randint(0, 2, (32,)))
    site.privatize(
        model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(data, batch_size=8)
    )
    assert site.private is not None
