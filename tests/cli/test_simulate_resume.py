"""`simulate --out DIR --resume` continues an interrupted simulation after its last completed round.

A user presses Ctrl-C while round 2 runs, then runs the same command with
``--resume``. The run must finish its planned rounds with every completed
round listed once (the interrupted round 2 abandoned, a new round id after
it: no round id used twice), the sites' ledgers going on (the round in
flight stays charged: fail closed), their records chained on under the same
keys, and ``securefl audit`` passing on the folder, with each site's ε as
its ledger says. ``--resume`` on a folder with nothing to continue, or a
finished run, says so in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from simulate_interrupt import interrupt_when_round_2_opens

from securefl.cli import cli
from securefl.config import DPConfig
from securefl.dp import PrivacyLedger
from securefl.reports import Roster
from securefl.reports.server_log import SERVER_LOG_NAME, read_server_log


def _invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("secure", ["plain", "mask", "he"])
def test_an_interrupted_simulation_resumes_and_finishes_with_a_clean_audit(
    secure: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    args = ["simulate", "--secure", secure, "--rounds", "3", "--out", str(out), "--json"]
    interrupt_when_round_2_opens(monkeypatch, KeyboardInterrupt())
    assert _invoke(*args).exit_code == 130
    first = json.loads((out / "summary.json").read_text())
    assert first["rounds_completed"] == 1
    monkeypatch.undo()

    resumed = _invoke(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is None
    rounds = [h["round"] for h in summary["history"]]
    assert rounds == sorted(set(rounds)), "a round id was used twice"
    assert rounds[0] == 1 and summary["history"][0]["status"] == "aggregated"
    # round 2 was left open by the interruption: abandoned, never reopened
    assert [h["status"] for h in summary["history"] if h["round"] == 2] == ["abandoned"]
    assert summary["rounds_completed"] == 3 - 1  # the abandoned round counts toward max_rounds

    roster = Roster.load(out / "roster.json")
    log, findings = read_server_log(
        out / SERVER_LOG_NAME, federation=roster.federation, public_key=roster.server
    )
    assert findings == [] and log is not None and log.closed
    assert sorted(log.rounds) == rounds  # one signed log, chained on, each round once
    assert len({e.get("run") for e in log.rounds.values()}) == 1
    audit = _invoke("audit", str(out), "--json")
    assert audit.exit_code == 0, audit.output

    for site in summary["sites"]:
        path = out / "state" / site["name"] / "ledger.sqlite"
        dp = DPConfig()  # the options simulate ran with: its defaults
        with PrivacyLedger(
            path, site=site["name"], epsilon_budget=dp.epsilon, delta=dp.delta,
            accountant=dp.accountant,
        ) as ledger:  # fmt: skip
            assert ledger.pending() == []
            assert site["epsilon"] == pytest.approx(ledger.spent(), rel=1e-9)
            # the round in flight at the interruption stays charged (fail closed)
            assert {e.round_id for e in ledger.history()} >= {1, 2}


def test_resume_refuses_a_folder_with_nothing_to_continue(tmp_path: Path) -> None:
    empty = _invoke("simulate", "--out", str(tmp_path / "none"), "--resume")
    assert empty.exit_code == 2 and "holds no simulation to continue" in empty.output
    no_out = _invoke("simulate", "--resume")
    assert no_out.exit_code == 2 and "--out" in no_out.output


def test_resume_refuses_a_finished_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert (
        _invoke("simulate", "--secure", "plain", "--rounds", "1", "--out", str(out)).exit_code == 0
    )
    again = _invoke("simulate", "--secure", "plain", "--rounds", "1", "--out", str(out), "--resume")
    assert again.exit_code == 2
    assert "nothing to continue" in again.output
