"""What `simulate` suggests when a run learned nothing, distributed DP included.

A run at the majority-class rate is told the levers that apply to it. A local
DP-SGD run is also pointed at distributed DP, the lever when the sites' noise
is the limit (docs/privacy.md, "Utility on own tabular data"); a run that is
already distributed is not, nor one on own CSVs without a schema (the scale,
not the noise, is what is wrong there), and a run under another secure mode
is told it needs masking. The CLI passes the run's own privacy model and secure mode.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from securefl.cli import cli
from securefl.data import Column, Schema, breast_cancer_federation, csv_federation
from securefl.simulation import orchestrator
from securefl.simulation.advice import learned_nothing_hint


@pytest.fixture(scope="module")
def bundled():
    return breast_cancer_federation(sites=3, seed=0)


def test_a_local_run_that_learned_nothing_is_pointed_at_distributed_dp(bundled):
    hint = learned_nothing_hint(bundled, 0.0, epsilon=1.0, rounds=12)
    assert hint is not None and "--privacy distributed)" in hint
    plain = learned_nothing_hint(bundled, 0.0, epsilon=1.0, rounds=12, secure="plain")
    assert plain is not None and "--privacy distributed --secure mask" in plain
    done = learned_nothing_hint(bundled, 0.0, epsilon=1.0, rounds=12, privacy="distributed")
    assert done is not None and "--privacy distributed" not in done
    assert "--epsilon 2" in done and "--rounds 24" in done  # the other levers stay
    assert learned_nothing_hint(bundled, 1.0, epsilon=1.0, rounds=12) is None


def test_own_csvs_without_a_schema_are_pointed_at_the_schema_not_distributed_dp(tmp_path):
    paths = []
    for name in "ab":
        path = tmp_path / f"{name}.csv"
        rows = "".join(f"{i},{i % 3},{int(i % 4 == 0)}\n" for i in range(40))
        path.write_text("age,grade,y\n" + rows, encoding="utf-8")
        paths.append((name, path))
    raw = csv_federation(paths, label="y")  # signed-log: the scale is what is wrong
    hint = learned_nothing_hint(raw, 0.0, epsilon=1.0, rounds=12)
    assert hint is not None and "--schema" in hint and "--privacy distributed" not in hint
    declared = Schema(
        columns=(
            Column(name="age", type="numeric", range=(0, 40)),
            Column(name="grade", type="categorical", categories=("0", "1", "2")),
        )
    )
    scaled = csv_federation(paths, label="y", schema=declared)
    hint = learned_nothing_hint(scaled, 0.0, epsilon=1.0, rounds=12)
    assert hint is not None and "--schema" not in hint and "--privacy distributed" in hint


def _learned_nothing(data, config, **kwargs):
    """A run whose every round completed and whose model is no better than guessing."""
    return orchestrator.SimulationResult(
        secure=config.secure,
        rounds=1,
        rounds_completed=1,
        finish_reason="reached max_rounds=1",
        global_accuracy=0.0,
        sites=[],
        privacy=config.privacy,
    )


@pytest.mark.parametrize(
    "args, suggested",
    [
        ([], "--privacy distributed)"),
        (["--secure", "plain"], "--privacy distributed --secure mask"),
        (["--privacy", "distributed"], None),
    ],
)
def test_simulate_passes_its_privacy_model_to_the_hint(monkeypatch, args, suggested):
    monkeypatch.setattr(orchestrator, "run_simulation", _learned_nothing)
    result = CliRunner().invoke(cli, ["simulate", "--rounds", "1", "--json", *args])
    assert result.exit_code == 0, result.output
    assert "hint:" in result.stderr and "learned nothing" in result.stderr
    if suggested is None:
        assert "--privacy distributed" not in result.stderr
    else:
        assert suggested in result.stderr
