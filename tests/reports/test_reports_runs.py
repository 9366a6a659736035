"""Records name the server's run: round ids increase within it; the chain goes on across runs.

A server keeps one run id for the life of its state folder; a new folder is a
new run that may count rounds from 1 again. The site's chain must go on
through it (no fork, no second chain), while within one run a round id that
does not increase is still refused by the writer and failed by the audit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from reports_fixtures import make_event, raw_public

from securefl.errors import DataError, ProtocolError
from securefl.reports import RecordWriter, Roster, audit, parse_record, read_record_file
from securefl.reports._canonical import record_hash, sign_record
from securefl.reports.crosscheck import check_against_log
from securefl.reports.recompute import securefl_epsilon
from securefl.reports.records import LoadedRecord
from securefl.reports.server_log import ServerLog


def _append(writer: RecordWriter, run: str, round_id: int, epsilon: float) -> None:
    writer.append(
        round_id=round_id,
        run=run,
        event=make_event(640, 64, 1.1),
        accountant="rdp",
        delta=1e-5,
        epsilon=epsilon,
        epsilon_budget=90.0,
        model_hash=hashlib.sha256(f"{run}{round_id}".encode()).hexdigest(),
        dataset_size=640,
        expected_batch_size=64,
    )


def test_a_chain_goes_on_across_two_runs_and_audits_clean(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "records" / "a.jsonl"
    eps = _claims_for(tmp_path, key, [("aa", 1), ("aa", 2), ("bb", 1), ("bb", 2)])
    writer = RecordWriter(path, federation="f", site="a", signing_key=key)
    for (run, rnd), e in zip([("aa", 1), ("aa", 2), ("bb", 1), ("bb", 2)], eps, strict=True):
        _append(writer, run, rnd, e)
    # a restarted site continues the chain: same run, a round id not above the last refused
    again = RecordWriter(path, federation="f", site="a", signing_key=key)
    assert again.last_round_of("aa") == 2 and again.last_round_of("bb") == 2
    assert again.recorded("aa", 1) and not again.recorded("cc", 1)
    with pytest.raises(ProtocolError):
        _append(again, "bb", 2, 9.0)
    report = audit(
        [tmp_path / "records"], roster=Roster("f", {"a": raw_public(key)}), no_server_log=True
    )
    assert report.passed, [f for f in report.findings if f.fails]
    assert [r.round_id for r in report.rounds] == [1, 2, 1, 2]


def _claims_for(
    tmp_path: Path, key: Ed25519PrivateKey, rounds: list[tuple[str, int]]
) -> list[float]:
    """The ε an audit recomputes after each record (every record holds the same event)."""
    event = make_event(640, 64, 1.1).to_dict()
    return [
        securefl_epsilon([event] * (i + 1), delta=1e-5, accountant="rdp")
        for i in range(len(rounds))
    ]


def test_a_round_id_going_down_within_one_run_fails_the_audit(tmp_path: Path) -> None:
    """A site re-signing its chain with round 1 of run aa after round 2 of aa is caught."""
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "records" / "a.jsonl"
    eps = _claims_for(tmp_path, key, [("aa", 2), ("aa", 1)])
    prev = "0" * 64
    lines = []
    for (run, rnd), e in zip([("aa", 2), ("aa", 1)], eps, strict=True):
        rec = {
            "version": 1, "federation": "f", "site": "a", "run": run, "round_id": rnd,
            "event": make_event(640, 64, 1.1).to_dict(), "dataset_size": 640,
            "expected_batch_size": 64, "accountant": "rdp", "delta": 1e-5, "epsilon": e,
            "epsilon_budget": 90.0, "model_hash": "ab" * 32, "prev_hash": prev,
            "signature": "0" * 128,
        }  # fmt: skip
        rec["signature"] = sign_record(rec, key)
        rec = parse_record(rec)
        prev = record_hash(rec)
        lines.append(json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    report = audit(
        [tmp_path / "records"], roster=Roster("f", {"a": raw_public(key)}), no_server_log=True
    )
    assert "round_not_increasing" in {f.code for f in report.findings if f.fails}


@pytest.mark.parametrize("run", ["AB", "x", "a" * 65, 7])
def test_a_run_that_is_not_lowercase_hex_is_refused(run: object) -> None:
    rec = {
        "version": 1, "federation": "f", "site": "a", "run": run, "round_id": 1,
        "event": make_event(640, 64, 1.1).to_dict(), "dataset_size": 640,
        "expected_batch_size": 64, "accountant": "rdp", "delta": 1e-5, "epsilon": 1.0,
        "epsilon_budget": 90.0, "model_hash": "ab" * 32, "prev_hash": "0" * 64,
        "signature": "0" * 128,
    }  # fmt: skip
    with pytest.raises(DataError, match="run"):
        parse_record(rec)


def _loaded(tmp_path: Path, run: str) -> list[LoadedRecord]:
    key = Ed25519PrivateKey.generate()
    writer = RecordWriter(tmp_path / f"{run}.jsonl", federation="f", site="a", signing_key=key)
    _append(writer, run, 1, 1.0)
    return read_record_file(tmp_path / f"{run}.jsonl")[0]


def _entry(run: str | None) -> dict[str, object]:
    dp = {"delta": 1e-5, "accountant": "rdp", "max_grad_norm": 1.0, "epsilon": 90.0,
          "batch_size": None, "noise_multiplier": None}  # fmt: skip
    entry: dict[str, object] = {
        "cohort": ["a"], "submitted": ["a"], "model_hash": None, "max_weight": 1e6, "dp": dp,
    }  # fmt: skip
    if run is not None:
        entry["run"] = run
    return entry


@pytest.mark.parametrize(("logged", "matched"), [("aa", True), ("bb", False), (None, True)])
def test_a_record_matches_the_server_log_by_run_and_round(
    tmp_path: Path, logged: str | None, matched: bool
) -> None:
    """Round 1 of run aa is not round 1 of run bb; a log line without a run matches by round."""
    records = _loaded(tmp_path, "aa")
    log = ServerLog(rounds={1: _entry(logged)})
    codes = {f.code for f in check_against_log({"a": records}, ["a"], log, "log")}
    assert ("round_not_in_server_log" not in codes) is matched
    assert ("participation_unrecorded" in codes or "records_truncated" in codes) is not matched


def _closed_log(run: str, rounds: int) -> ServerLog:
    return ServerLog(rounds={r: _entry(run) for r in range(1, rounds + 1)}, closing={"run": run})


def test_a_site_that_drops_a_whole_run_is_caught_by_that_runs_log(tmp_path: Path) -> None:
    """A federation that ran twice (two server state folders) has one round log per run.

    The honest site's one chain holds both runs; a site that re-signs its
    chain without run aa (claiming less ε) holds run bb only. The auditor
    checks the records against each run's log in turn: the honest chain
    must pass against both, or the auditor cannot tell it from the
    cheater's, which passes against bb's log and must fail against aa's.
    """
    key = Ed25519PrivateKey.generate()
    honest = RecordWriter(tmp_path / "honest.jsonl", federation="f", site="a", signing_key=key)
    cheat = RecordWriter(tmp_path / "cheat.jsonl", federation="f", site="a", signing_key=key)
    for run, rnd in [("aa", 1), ("aa", 2), ("bb", 1), ("bb", 2)]:
        _append(honest, run, rnd, 1.0)
    for run, rnd in [("bb", 1), ("bb", 2)]:
        _append(cheat, run, rnd, 1.0)
    by_run = {run: _closed_log(run, 2) for run in ("aa", "bb")}

    def fails(name: str, run: str) -> set[str]:
        records = read_record_file(tmp_path / f"{name}.jsonl")[0]
        found = check_against_log({"a": records}, ["a"], by_run[run], "log")
        return {f.code for f in found if f.fails}

    assert fails("honest", "aa") == set() and fails("honest", "bb") == set()
    assert fails("cheat", "bb") == set()
    assert fails("cheat", "aa") & {"records_truncated", "participation_unrecorded"}
