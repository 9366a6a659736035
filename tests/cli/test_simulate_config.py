"""``simulate`` runs one FederationConfig: the options, or a federation file under them.

A federation file's [mask] settings must reach the masking in both
transports, as in a deployment: a federation that assumes more colluders
(``mask.corrupt``) needs a higher threshold, so a dropout the default would
tolerate is refused. Runs are captured at ``run_simulation`` /
``run_https_simulation`` so no model is trained here.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from securefl.cli import cli
from securefl.config import (
    DPConfig,
    FederationConfig,
    RoundConfig,
    StrategyConfig,
    TrainConfig,
    load_federation,
)
from securefl.data.federations import breast_cancer_federation
from securefl.errors import ConfigError
from securefl.modes import mask_config
from securefl.secagg import MaskConfig
from securefl.simulation import LocalFederation, orchestrator, run_simulation
from securefl.simulation import https_run as https_module
from securefl.simulation.https_run import _provisioned
from securefl.simulation.modes import check_dropouts
from securefl.simulation.processes import federation_toml, simulate_tables
from securefl.simulation.trainer import default_model

FOUR = ("hospital-a", "hospital-b", "hospital-c", "hospital-d")


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="securefl")


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _capture(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> list[FederationConfig]:
    """Replace a run function by one that records its config and reports no round run."""
    seen: list[FederationConfig] = []

    def fake(data: Any, config: FederationConfig, **_: Any) -> orchestrator.SimulationResult:
        seen.append(config)
        return orchestrator.SimulationResult(
            secure=config.secure, rounds=0, finish_reason="captured", global_accuracy=0.0, sites=[]
        )

    monkeypatch.setattr(target, name, fake)
    return seen


def _threshold(mask: MaskConfig, sites: tuple[str, ...] = FOUR) -> int:
    return mask.plan(federation="f", round_id=1, cohort=sites, federation_size=len(sites)).threshold


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "federation.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_default_run_is_the_federation_simulate_always_ran(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = _capture(monkeypatch, orchestrator, "run_simulation")
    _invoke("simulate")
    assert seen == [
        FederationConfig(
            name="securefl-sim",
            secure="mask",
            dp=DPConfig(epsilon=1.0, delta=1e-5, max_grad_norm=0.5, batch_size=32),
            train=TrainConfig(local_epochs=1, learning_rate=1.0),
            rounds=RoundConfig(
                max_rounds=12, patience=None, min_sites=2, stage_timeout_seconds=120.0
            ),
            strategy=StrategyConfig(name="fedadam"),
        )
    ]
    assert seen[0].mask == mask_config()


@pytest.mark.parametrize("transport", ["memory", "https"])
def test_a_mask_setting_in_the_file_reaches_both_transports(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, transport: str
) -> None:
    fed = _file(tmp_path, "[mask]\ncorrupt = 2\n")
    target, name = (
        (https_module, "run_https_simulation")
        if transport == "https"
        else (orchestrator, "run_simulation")
    )
    seen = _capture(monkeypatch, target, name)
    _invoke("simulate", "--config", str(fed), "--sites", "4", "--transport", transport)
    (config,) = seen
    # two colluders assumed: four sites must all survive, where the default needs three
    assert _threshold(config.mask) == 4 and _threshold(mask_config()) == 3
    if transport == "https":  # what the processes are provisioned with says the same
        data = breast_cancer_federation(sites=4, seed=0)
        written = tmp_path / "provisioned.toml"
        tables = simulate_tables(_provisioned(config, data, 0))
        written.write_text(federation_toml(tables, list(FOUR)), encoding="utf-8")
        assert _threshold(load_federation(written).mask) == 4


def test_the_file_mask_decides_which_dropout_simulate_refuses(tmp_path: Path) -> None:
    fed = _file(tmp_path, "[mask]\ncorrupt = 2\n")
    args = ("simulate", "--sites", "4", "--dropout", "hospital-b@masked-input", "--rounds", "1")
    refused = _invoke(*args, "--config", str(fed), "--out", str(tmp_path / "out"))
    assert refused.exit_code == 2
    assert "threshold t = 4" in refused.output
    assert not (tmp_path / "out" / "records").exists()  # refused before any site was built
    # the same dropout under the default masking is one the federation survives
    check_dropouts("mask", list(FOUR), {"hospital-b": "masked-input"}, 2)
    with pytest.raises(ConfigError, match="threshold t = 4"):
        check_dropouts(
            "mask", list(FOUR), {"hospital-b": "masked-input"}, 2, mask=load_federation(fed).mask
        )


def test_run_simulation_refuses_by_the_config_mask(tmp_path: Path) -> None:
    config = FederationConfig(
        dp=DPConfig(batch_size=16),
        rounds=RoundConfig(max_rounds=1),
        mask=MaskConfig(clip=1.0, corrupt=2),
    )
    with pytest.raises(ConfigError, match="threshold t = 4"):
        run_simulation(
            breast_cancer_federation(sites=4, seed=0),
            config,
            out=tmp_path,
            dropouts={"hospital-b": "masked-input"},
        )


def test_local_federation_masks_with_the_mask_it_is_given(tmp_path: Path) -> None:
    mask = MaskConfig(clip=1.0, corrupt=2)
    fed = LocalFederation(
        site_names=list(FOUR),
        initial_model=default_model(30, 2),
        dp=DPConfig(),
        train=TrainConfig(),
        rounds=RoundConfig(),
        strategy=StrategyConfig(),
        max_weight=100.0,
        workdir=tmp_path,
        mask=mask,
    )
    # the server opens a round with the file's threshold, and every site checks the same plan
    assert fed.config.mask is mask
    assert fed.driver.mode._config is mask  # type: ignore[attr-defined]
    for site in fed.sites.values():
        assert site.mode._config is mask  # type: ignore[attr-defined]


def test_an_option_given_overrides_the_file_and_the_others_come_from_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fed = _file(
        tmp_path,
        '[federation]\nname = "trial"\n[dp]\nepsilon = 2.0\nbatch_size = 24\n'
        '[train]\nlearning_rate = 0.3\n[rounds]\nmax_rounds = 4\n[strategy]\nname = "fedavgm"\n',
    )
    seen = _capture(monkeypatch, orchestrator, "run_simulation")
    _invoke("simulate", "--config", str(fed), "--epsilon", "0.5", "--strategy", "fedprox")
    (config,) = seen
    assert config.dp.epsilon == 0.5 and config.strategy.name == "fedprox"  # given: they win
    assert config.name == "trial" and config.dp.batch_size == 24  # not given: the file's
    assert config.train.learning_rate == 0.3 and config.rounds.max_rounds == 4
    assert config.dp.max_grad_norm == DPConfig().max_grad_norm  # the file's default, not 0.5


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[mask]\ncorupt = 1\n", "mask.corupt"),
        ("[dp]\nepsilon = -1.0\n", "dp.epsilon"),
        ("[model]\nfactory = 'pkg.mod:build'\n", "model.factory"),
    ],
)
def test_a_bad_federation_file_names_the_file_and_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, key: str
) -> None:
    seen = _capture(monkeypatch, orchestrator, "run_simulation")
    fed = _file(tmp_path, text)
    result = _invoke("simulate", "--config", str(fed))
    assert result.exit_code == 2 and not seen
    assert str(fed) in result.output and key in result.output
    assert "Traceback" not in result.output


def test_a_bad_option_over_a_file_names_the_file_and_the_setting(tmp_path: Path) -> None:
    fed = _file(tmp_path, "[dp]\nepsilon = 2.0\n")
    result = _invoke("simulate", "--config", str(fed), "--epsilon", "0")
    assert result.exit_code == 2
    assert str(fed) in result.output and "dp.epsilon must be > 0" in result.output


def test_every_table_simulate_tables_writes_loads_back_as_the_same_federation(
    tmp_path: Path,
) -> None:
    config = FederationConfig(
        name="trial",
        secure="he",
        dp=DPConfig(epsilon=2.0, noise_multiplier=1.5, accountant="rdp"),
        train=TrainConfig(momentum=0.5),
        rounds=RoundConfig(patience=2, max_weight=300.0),
        strategy=StrategyConfig(name="fedavgm", server_lr=0.5, momentum=0.8),
        mask=MaskConfig(clip=2.0, corrupt=1, precision_bits=12),
    )
    written = _file(tmp_path, federation_toml(simulate_tables(config), list(FOUR)))
    loaded = load_federation(written)
    assert loaded.sites and {s.name for s in loaded.sites} == set(FOUR)
    assert replace(loaded, sites=()) == config


def test_run_simulation_builds_its_federation_with_the_config_mask_and_he(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    built: list[dict[str, Any]] = []

    class Stop(Exception):
        pass

    def recording(**kwargs: Any) -> None:
        built.append(kwargs)
        raise Stop

    monkeypatch.setattr(orchestrator, "LocalFederation", recording)
    config = FederationConfig(
        dp=DPConfig(batch_size=16),
        mask=MaskConfig(clip=2.0, corrupt=0),
        he=load_federation(_file(tmp_path, '[he]\npreset = "ckks-n4096"\n')).he,
    )
    with pytest.raises(Stop):
        run_simulation(breast_cancer_federation(sites=4, seed=0), config)
    (kwargs,) = built
    assert kwargs["mask"] is config.mask and kwargs["he_preset"] == "ckks-n4096"
