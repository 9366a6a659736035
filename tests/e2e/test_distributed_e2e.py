"""privacy = "distributed" end to end: simulate trains, the audit passes, ledgers hold Skellam.

Three sites, a few rounds, every party in one process through the command a
user runs (``securefl simulate --privacy distributed``): the federated model
beats the majority class on held-out patients, ``securefl audit`` recomputes
every claim (the Skellam events with their two computations) and passes, and
each site's ledger holds one Skellam release per round whose central ε is
within the site's budget.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from securefl.cli import cli
from securefl.data import breast_cancer_federation
from securefl.dp import PrivacyLedger, SkellamEvent
from securefl.reports import audit

pytestmark = pytest.mark.slow

ROUNDS = 5


def test_simulate_distributed_trains_and_its_audit_passes(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--privacy", "distributed",
            "--sites", "3",
            "--rounds", str(ROUNDS),
            "--lr", "4",
            "--epsilon", "1",
            "--out", str(out),
            "--json",
        ],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rounds_completed"] == ROUNDS
    assert [h["status"] for h in summary["history"]] == ["aggregated"] * ROUNDS
    data = breast_cancer_federation(sites=3, seed=0)
    majority = np.bincount(data.y_test).max() / len(data.y_test)
    assert summary["global"]["accuracy"] > majority + 0.1  # measured 0.84-0.97

    report = audit([out])
    assert report.passed, [f.to_dict() for f in report.findings]

    for site in summary["sites"]:
        ledger = PrivacyLedger(
            out / "state" / site["name"] / "ledger.sqlite",
            site=site["name"],
            epsilon_budget=1.0,
            delta=1e-5,
        )
        history = ledger.history()
        assert len(history) == ROUNDS
        assert all(isinstance(e.event, SkellamEvent) and e.event.steps == 1 for e in history)
        assert all(e.status == "committed" for e in history)
        assert 0 < ledger.spent() <= 1.0
        assert site["epsilon"] == pytest.approx(ledger.spent())
        records = (out / "records" / f"{site['name']}.jsonl").read_text().splitlines()
        assert [json.loads(r)["event"]["kind"] for r in records] == ["skellam"] * ROUNDS
        ledger.close()


def test_simulate_refuses_distributed_without_masking(tmp_path):
    result = CliRunner().invoke(
        cli, ["simulate", "--privacy", "distributed", "--secure", "he", "--rounds", "1"]
    )
    assert result.exit_code != 0
    assert "secure" in result.output and "mask" in result.output
