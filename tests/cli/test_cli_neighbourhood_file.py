"""``securefl simulate --config FILE`` with ``[mask] neighbourhood = true``, end to end.

The federation file is how ``simulate`` turns the neighbourhood round on
(there is no flag): the command must build every party with the sites' BLS
keys and run the rounds to an auditable run folder. Eight sites with
``complete_graph_max = 3`` sit on a k-regular graph, where the round runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from securefl.cli import cli
from securefl.hazmat import bls
from securefl.reports import audit

FILE = """\
[federation]
secure = "mask"

[mask]
neighbourhood = true
complete_graph_max = 3
dropout_rate = 0.0
corrupt_rate = 0.0
"""


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="securefl")


@pytest.mark.slow
def test_simulate_runs_the_neighbourhood_round_from_the_federation_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[int] = []
    real = bls.verify_aggregate

    def counting(publics: object, message: bytes, signature: bytes) -> None:
        keys = list(publics)  # type: ignore[call-overload]
        checks.append(len(keys))
        real(keys, message, signature)

    monkeypatch.setattr(bls, "verify_aggregate", counting)
    config = tmp_path / "federation.toml"
    config.write_text(FILE, encoding="utf-8")
    out = tmp_path / "run"
    args = ["simulate", "--config", str(config), "--sites", "8", "--rounds", "2"]
    result = CliRunner().invoke(
        cli, [*args, "--batch-size", "16", "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [h["status"] for h in summary["history"]] == ["aggregated", "aggregated"]
    assert all(len(h["survivors"]) == 8 for h in summary["history"])
    # each round: every site and the server checked one aggregate of all eight signers
    assert len(checks) >= 2 * 9 and min(checks) == 8
    assert audit([out]).passed
