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

from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
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


def _open(kits: Path, config: dict[str, Any]) -> tuple[Site, Any]:
    hub = MemoryHub()
    server = hub.connect(SERVER)
    site = Site.from_kit(kits / "site-a", transport=hub.connect("site-a"))
    kit = Kit.load(kits / "site-a")
    model = nn.Sequential(nn.Linear(8, 2))
    assert ParamSpec.from_state_dict(model.state_dict()) == kit.spec
    data = TensorDataset(torch.randn(64, 8), torch.randint(0, 2, (64,)))
    model, _, _ = site.privatize(
        model, torch.optim.SGD(model.parameters(), lr=1.0), DataLoader(data, batch_size=1)
    )
    start = m.RoundStart(
        cohort=SITES,
        model=PlainGlobalModel(kit.initial_params()).payload(),
        spec=kit.spec.to_dict(),
        max_weight=1000.0,
        min_sites=3,
        run="0f",
        config=config,
    ).to_bytes()
    server.send(Envelope(federation="ward", round=1, stage=m.ROUND_START, sender=SERVER,
                         receiver="site-a", payload=start))  # fmt: skip
    return site, model


def test_the_honest_announcement_opens_a_distributed_round(distributed_kits: Path) -> None:
    site, model = _open(distributed_kits, _honest_config(Kit.load(distributed_kits / "site-a")))
    assert site.distributed is not None
    rnd = next(site.rounds(model))
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
    site, model = _open(distributed_kits, {**config, "distributed": announced})
    with pytest.raises(ProtocolError, match=key):
        for _ in site.rounds(model):
            pytest.fail(f"a round announcing {key}={announced[key]!r} was opened")
    assert site.ledger.history() == [] and site.ledger.spent() == 0.0


@pytest.mark.parametrize("config", [{}, "extra"], ids=["nothing-announced", "unknown-setting"])
def test_a_server_hiding_or_adding_distributed_settings_is_refused(
    distributed_kits: Path, config: object
) -> None:
    honest = _honest_config(Kit.load(distributed_kits / "site-a"))
    if config == "extra":
        config = {**honest, "distributed": {**honest["distributed"], "weight_slot": 1}}
    site, model = _open(distributed_kits, config)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        for _ in site.rounds(model):
            pytest.fail("a round with other distributed settings was opened")
    assert site.ledger.history() == []


@pytest.mark.parametrize("secure", ["he", "plain"])
def test_provisioning_distributed_with_another_secure_mode_is_one_line(
    tmp_path: Path, secure: str
) -> None:
    from conftest import DISTRIBUTED_TOML

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
    from conftest import DISTRIBUTED_TOML

    fed = tmp_path / "fed.toml"
    fed.write_text(DISTRIBUTED_TOML.replace("records = 300\n", ""), "utf-8")
    result = CliRunner().invoke(cli, ["provision", str(fed), "--out", str(tmp_path / "kits")])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "distributed.records" in lines[0], result.output
    assert not (tmp_path / "kits").exists()
