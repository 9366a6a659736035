"""A federation whose next round can never open ends at once, says why, and reports no model.

The regression: with three masking sites, one vanishing left a cohort of two
that the mask server refuses; the server reopened round after round (2,328
in 130 s) and the run still showed an untrained model as "federated".
"""

import json

import pytest

from securefl.config import DPConfig, FederationConfig, RoundConfig, StrategyConfig, TrainConfig
from securefl.data import breast_cancer_federation
from securefl.errors import ConfigError
from securefl.simulation import LocalFederation, orchestrator, run_simulation
from securefl.simulation.trainer import default_model, run_site

pytestmark = pytest.mark.slow

#: far more rounds than any correct run opens here; reaching it means the driver spins
MAX_OPENED = 6


class RoundsOpenedTooOften(RuntimeError):
    """Not a SecureFLError, so the server loop cannot swallow it."""


def _count_opens(driver):
    server = driver.mode.server
    opened = []

    def counted(ctx):
        opened.append(ctx.round)
        if len(opened) > MAX_OPENED:
            raise RoundsOpenedTooOften(f"opened {len(opened)} rounds")
        return server(ctx)

    driver.mode.server = counted
    return opened


def test_a_cohort_the_mask_server_refuses_ends_the_run_instead_of_spinning(tmp_path):
    data = breast_cancer_federation(sites=3, seed=0)
    initial = default_model(data.num_features, len(data.classes))
    fed = LocalFederation(
        site_names=[s.name for s in data.sites],
        initial_model=initial,
        dp=DPConfig(epsilon=1.0, batch_size=32),
        train=TrainConfig(),
        rounds=RoundConfig(max_rounds=4, stage_timeout_seconds=60),
        strategy=StrategyConfig(),
        secure="mask",
        workdir=tmp_path,
        max_weight=1000.0,
        dropouts={"hospital-b": "share"},  # simulate refuses this; the library may rehearse it
    )
    opened = _count_opens(fed.driver)
    by_name = {s.name: s for s in data.sites}

    def train(site):
        model = default_model(data.num_features, len(data.classes))
        model.load_state_dict(initial.state_dict())
        run_site(site, by_name[site.name], model, batch_size=32, learning_rate=0.5, local_epochs=1)

    driver = fed.run(train).driver
    assert len(opened) <= 2  # round 1, then one refused attempt at round 2
    assert "cannot open" in driver.halted and "min_cohort" in driver.halted
    assert driver.current_round == 1
    # the surviving sites were told the run is over (no 60 s wait for a timeout)
    assert {n for n, s in fed.sites.items() if s.finish_reason} == {"hospital-a", "hospital-c"}


def test_a_run_with_no_completed_round_reports_no_federated_model(tmp_path, monkeypatch):
    # plain mode, two of three sites vanish: the only round is abandoned, no next one opens
    monkeypatch.setattr(orchestrator, "check_dropouts", lambda *a, **k: None)
    result = run_simulation(
        breast_cancer_federation(sites=3, seed=0),
        FederationConfig(
            secure="plain",
            dp=DPConfig(epsilon=1.0, batch_size=32),
            train=TrainConfig(learning_rate=0.5),
            rounds=RoundConfig(max_rounds=3, stage_timeout_seconds=60),
            strategy=StrategyConfig(),
        ),
        out=tmp_path,
        dropouts={"hospital-a": "update", "hospital-b": "update"},
    )
    assert not result.trained and result.rounds_completed == 0
    assert result.halted
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rounds_completed"] == 0 and summary["halted"]
    assert summary["global"]["accuracy"] is None
    assert all(s["federated_accuracy"] is None for s in summary["sites"])
    assert not (tmp_path / "global_model.safetensors").exists()


@pytest.mark.parametrize(
    "secure, sites, dropouts, needle",
    [
        ("mask", 3, {"hospital-b": "share"}, "--dropout"),
        ("mask", 5, {"hospital-a": "share", "hospital-b": "share", "hospital-c": "share"}, "t ="),
        ("plain", 3, {"hospital-a": "update", "hospital-b": "update"}, "min_sites=2"),
    ],
)
def test_run_simulation_refuses_a_dropout_the_cohort_cannot_survive(
    tmp_path, secure, sites, dropouts, needle
):
    with pytest.raises(ConfigError, match=needle):
        run_simulation(
            breast_cancer_federation(sites=sites, seed=0),
            FederationConfig(
                secure=secure,
                dp=DPConfig(epsilon=1.0, batch_size=16),
                train=TrainConfig(),
                rounds=RoundConfig(max_rounds=1, stage_timeout_seconds=60),
                strategy=StrategyConfig(),
            ),
            out=tmp_path,
            dropouts=dropouts,
        )
    assert not (tmp_path / "records").exists()  # refused before any site was built


def test_a_delta_at_or_above_one_over_n_is_refused(tmp_path):
    data = breast_cancer_federation(sites=3, seed=0)
    largest = max(data.sites, key=lambda s: s.num_examples)
    with pytest.raises(ConfigError, match=rf"dp\.delta.*{largest.name}"):
        run_simulation(
            data,
            FederationConfig(
                dp=DPConfig(epsilon=1.0, delta=1.0 / largest.num_examples, batch_size=16),
                train=TrainConfig(),
                rounds=RoundConfig(max_rounds=1, stage_timeout_seconds=60),
                strategy=StrategyConfig(),
            ),
            out=tmp_path,
        )
    assert not (tmp_path / "records").exists()
