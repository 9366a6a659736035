"""A site of a ``privacy = "distributed"`` federation, built from its kit, and a cheating server.

The site derives every public number of distributed DP (sample rate q, the
expected batch size the server divides by, the scale γ, the central noise μ,
its threshold t and the colluders c its noise share is sized for) from its
own kit, never from the server. A server that announces any other value in
its round start (to make its step larger, or the sites' shares smaller) is
refused before the site reserves any privacy or draws a batch; the honest
announcement opens the round. Each case plays the server over the site's
own protocol path (``Site.from_kit`` with a memory endpoint in place of HTTPS).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from conftest import DISTRIBUTED_TOML
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.cli import cli
from securefl.errors import ProtocolError
from securefl.params import ParamSpec
from securefl.provision.kit import Kit
from securefl.runtime import Site
from securefl.runtime import messages as m
from securefl.runtime._distributed import DistributedPlan, DistributedStep
from securefl.runtime.global_model import PlainGlobalModel
from securefl.strategy import make_strategy
from securefl.transport.base import Transport
from securefl.transport.memory import MemoryHub
from securefl.wire import SERVER, Envelope

SITES = ("site-a", "site-b", "site-c")


def _plan(kit: Kit) -> DistributedPlan:
    return DistributedPlan.from_config(
        kit.federation, dimension=kit.spec.size, federation_size=len(kit.roster.site_names)
    )


def _honest_config(kit: Kit) -> dict[str, Any]:
    """What an honest server announces: its strategy's settings and the plan's numbers."""
    step = DistributedStep(make_strategy(kit.federation.strategy), _plan(kit))
    return step.round_config(1)


@dataclass
class _Opened:
    site: Site
    model: nn.Module
    optimizer: torch.optim.Optimizer
    server: Transport


def _start(kit: Kit, number: int, config: dict[str, Any]) -> Envelope:
    start = m.RoundStart(
        cohort=SITES,
        model=PlainGlobalModel(kit.initial_params()).payload(),
        spec=kit.spec.to_dict(),
        max_weight=1000.0,
        min_sites=3,
        run="0f",
        config=config,
    ).to_bytes()
    return Envelope(federation="ward", round=number, stage=m.ROUND_START, sender=SERVER,
                    receiver="site-a", payload=start)  # fmt: skip


def _open(kits: Path, config: dict[str, Any]) -> _Opened:
    """The kit's site-a, privatized, with round 1 opened by a server announcing ``config``."""
    hub = MemoryHub()
    server = hub.connect(SERVER)
    site = Site.from_kit(kits / "site-a", transport=hub.connect("site-a"))
    kit = Kit.load(kits / "site-a")
    model = nn.Sequential(nn.Linear(8, 2))
    assert ParamSpec.from_state_dict(model.state_dict()) == kit.spec
    data = TensorDataset(torch.randn(64, 8), torch.randint(0, 2, (64,)))
    model, optimizer, _ = site.privatize(
        model, torch.optim.SGD(model.parameters(), lr=1.0), DataLoader(data, batch_size=1)
    )
    server.send(_start(kit, 1, config))
    return _Opened(site, model, optimizer, server)


def test_the_honest_announcement_opens_a_distributed_round(distributed_kits: Path) -> None:
    opened = _open(distributed_kits, _honest_config(Kit.load(distributed_kits / "site-a")))
    site = opened.site
    assert site.distributed is not None
    rnd = next(site.rounds(opened.model))
    assert rnd.number == 1 and [e.round_id for e in site.ledger.history()] == [1]  # reserved


CHEATS = {
    "smaller expected batch (a larger step)": ("expected_batch_size", lambda v: v / 10),
    "another sample rate": ("sample_rate", lambda v: v * 2),
    "another scale": ("scale", lambda v: v * 2),
    "less central noise": ("mu_total", lambda v: v // 2),
    "a lower threshold": ("threshold", lambda v: 1),
    "fewer colluders (smaller shares)": ("colluders", lambda v: v + 1),
}


@pytest.mark.parametrize("cheat", list(CHEATS))
def test_a_server_changing_a_public_number_is_refused_before_any_privacy_is_spent(
    distributed_kits: Path, cheat: str
) -> None:
    key, change = CHEATS[cheat]
    config = _honest_config(Kit.load(distributed_kits / "site-a"))
    announced = dict(config["distributed"])
    announced[key] = change(announced[key])
    assert announced != config["distributed"]
    opened = _open(distributed_kits, {**config, "distributed": announced})
    site = opened.site
    with pytest.raises(ProtocolError, match=key):
        for _ in site.rounds(opened.model):
            pytest.fail(f"a round announcing {key}={announced[key]!r} was opened")
    assert site.ledger.history() == [] and site.ledger.spent() == 0.0


@pytest.mark.parametrize("config", [{}, "extra"], ids=["nothing-announced", "unknown-setting"])
def test_a_server_hiding_or_adding_distributed_settings_is_refused(
    distributed_kits: Path, config: object
) -> None:
    honest = _honest_config(Kit.load(distributed_kits / "site-a"))
    if config == "extra":
        config = {**honest, "distributed": {**honest["distributed"], "weight_slot": 1}}
    opened = _open(distributed_kits, config)  # type: ignore[arg-type]
    site = opened.site
    with pytest.raises(ProtocolError):
        for _ in site.rounds(opened.model):
            pytest.fail("a round with other distributed settings was opened")
    assert site.ledger.history() == []


@pytest.mark.parametrize("secure", ["he", "plain"])
def test_provisioning_distributed_with_another_secure_mode_is_one_line(
    tmp_path: Path, secure: str
) -> None:

    fed = tmp_path / "fed.toml"
    fed.write_text(DISTRIBUTED_TOML.replace('secure = "mask"', f'secure = "{secure}"'), "utf-8")
    result = CliRunner().invoke(cli, ["provision", str(fed), "--out", str(tmp_path / "kits")])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and 'secure = "mask"' in lines[0], result.output
    assert not (tmp_path / "kits").exists()  # nothing written


def test_provisioning_a_distributed_file_without_its_public_numbers_is_one_line(
    tmp_path: Path,
) -> None:

    fed = tmp_path / "fed.toml"
    fed.write_text(DISTRIBUTED_TOML.replace("records = 300\n", ""), "utf-8")
    result = CliRunner().invoke(cli, ["provision", str(fed), "--out", str(tmp_path / "kits")])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "distributed.records" in lines[0], result.output
    assert not (tmp_path / "kits").exists()


def test_a_deployed_site_charges_the_central_epsilon_and_refuses_past_its_budget(
    distributed_kits: Path,
) -> None:
    """μ is calibrated for max_rounds = 2 rounds at the kit's ε: a third round is refused.

    Each round charges one subsampled Skellam release of the plan's μ (the
    central ε, not a site's own DP-SGD), and the site's signed records carry
    that event with the ledger's ε.
    """
    from securefl.dp import SkellamEvent
    from securefl.errors import BudgetExhaustedError
    from securefl.reports import read_record_file

    kit = Kit.load(distributed_kits / "site-a")
    config = _honest_config(kit)
    opened = _open(distributed_kits, config)
    site = opened.site
    rounds = site.rounds(opened.model)
    loss_fn = nn.CrossEntropyLoss()
    for number in (1, 2):
        rnd = next(rounds)
        assert rnd.number == number
        features, labels = rnd.batch()
        opened.optimizer.zero_grad()
        out = opened.model(features)
        (loss_fn(out, labels) if len(labels) else out.sum()).backward()
        opened.optimizer.step()
        rnd.submit(metrics={})
        opened.server.send(_start(kit, number + 1, config))  # the server goes on
    with pytest.raises(BudgetExhaustedError):
        next(rounds)
    history = site.ledger.history()
    assert [(e.round_id, e.status) for e in history] == [(1, "committed"), (2, "committed")]
    assert all(isinstance(e.event, SkellamEvent) for e in history)
    assert 0 < site.ledger.spent() <= site.dp.epsilon
    records, bad = read_record_file(site.state_dir / "records" / "site-a.jsonl")
    assert bad == [] and [r.record["event"]["kind"] for r in records] == ["skellam"] * 2
    assert records[-1].record["epsilon"] == pytest.approx(site.ledger.spent(), rel=1e-9)


def test_the_server_kit_unmasks_integers_and_steps_by_the_public_expected_batch(
    distributed_kits: Path,
) -> None:
    """The deployed server: SecAgg+ on the integer path, θ ← θ − lr · Σ / (γ · B̄).

    B̄ is the public expected batch size of the kit, never a realised batch
    (per-site batch sizes stay private); the server announces the very
    numbers each site derives from its own kit.
    """
    import numpy as np

    from securefl.deploy.server import build_server
    from securefl.secagg import IntegerMaskServerMode

    server = build_server(distributed_kits / "server", host="127.0.0.1", port=0)
    server.http.start()
    try:
        kit = Kit.load(distributed_kits / "site-a")
        plan = _plan(kit)
        assert isinstance(server.driver.mode, IntegerMaskServerMode)
        assert server.driver.strategy.round_config(1) == _honest_config(kit)
        theta = np.zeros(plan.dimension)
        total = np.arange(plan.dimension, dtype=np.float64) * 1000.0  # an unmasked integer sum
        stepped = server.driver.strategy.apply(theta, total, 1)
        expected = -plan.learning_rate * total / (plan.scale * plan.expected_batch_size)
        assert plan.expected_batch_size == 0.1 * 300
        np.testing.assert_allclose(stepped, expected, rtol=1e-12)
    finally:
        server.transport.close()
        server.http.stop()
