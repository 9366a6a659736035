"""The ledger at its edges: the largest round id a row can hold, and nothing above it.

Round ids travel as JSON numbers (exact up to 2^53 − 1) and are stored as
SQLite's signed 64-bit integers; the ledger takes every id up to 2^53 − 1
and refuses the next, so a round the wire could carry is never refused by
the ledger, and one it could not is never stored.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from securefl.dp import DPEvent, PrivacyLedger, epsilon
from securefl.dp._ledger_schema import MAX_ROUND_ID
from securefl.errors import ConfigError, ProtocolError

ROUND = DPEvent(
    noise_multiplier=1.0, sample_rate=0.02, steps=50, max_grad_norm=1.0, secure_rng=False
)


def test_the_largest_round_id_is_admitted_and_the_next_refused(tmp_path: Path) -> None:
    assert MAX_ROUND_ID == 2**53 - 1
    with PrivacyLedger(
        tmp_path / "l.db", site="site-a", epsilon_budget=50.0, delta=1e-5, accountant="rdp"
    ) as ledger:
        ledger.commit(ledger.reserve(MAX_ROUND_ID, ROUND), ROUND)
        assert [h.round_id for h in ledger.history()] == [MAX_ROUND_ID]
        with pytest.raises(ProtocolError):
            ledger.reserve(MAX_ROUND_ID + 1, ROUND, run="0b")
        assert [h.round_id for h in ledger.history()] == [MAX_ROUND_ID]


def test_a_file_with_an_events_table_but_no_schema_version_is_refused_not_reset(
    tmp_path: Path,
) -> None:
    # Not a ledger this code wrote (no version): taking it for a new ledger
    # would start a fresh budget beside the old spending.
    path = tmp_path / "l.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE events (round_id INTEGER, spent REAL)")
        db.execute("INSERT INTO events VALUES (1, 7.5)")
    with pytest.raises(ConfigError):
        PrivacyLedger(path, site="site-a", epsilon_budget=50.0, delta=1e-5, accountant="rdp")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT round_id, spent FROM events").fetchall() == [(1, 7.5)]


def _open(path: Path, budget: float) -> PrivacyLedger:
    return PrivacyLedger(path, site="site-a", epsilon_budget=budget, delta=1e-5, accountant="rdp")


def test_a_round_left_pending_by_a_crash_is_committed_as_reserved_after_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "l.db"
    with _open(path, 50.0) as before:
        held = before.reserve(3, ROUND, federation="fed", run="0a", model_hash="ab" * 32)
    # the process dies here; a restarted site finds the row pending and commits it in full
    with _open(path, 50.0) as after:
        (entry,) = after.history()
        assert entry.status == "pending"
        again = after.pending_reservation(entry)
        assert again.token == held.token
        assert again.epsilon_if_spent == held.epsilon_if_spent
        assert after.commit(again, entry.event) == pytest.approx(held.epsilon_if_spent)
        assert [h.status for h in after.history()] == ["committed"]


def test_remaining_rounds_is_one_when_exactly_one_more_round_fits(tmp_path: Path) -> None:
    one = epsilon([ROUND], delta=1e-5, accountant="rdp")
    two = epsilon([ROUND] * 2, delta=1e-5, accountant="rdp")
    with _open(tmp_path / "l.db", (one + two) / 2) as ledger:
        assert ledger.remaining_rounds(ROUND) == 1
    with _open(tmp_path / "m.db", one / 2) as ledger:
        assert ledger.remaining_rounds(ROUND) == 0


def test_a_ledger_opened_in_one_thread_serves_another(tmp_path: Path) -> None:
    # The site opens its ledger at start-up and reserves from the thread that
    # runs the round; the handle must work there (its own lock serialises use).
    with _open(tmp_path / "l.db", 50.0) as ledger:
        box: dict[str, object] = {}

        def round_thread() -> None:
            try:
                box["eps"] = ledger.commit(ledger.reserve(1, ROUND), ROUND)
            except Exception as exc:  # reported below, in the test's own thread
                box["error"] = exc

        worker = threading.Thread(target=round_thread)
        worker.start()
        worker.join()
        assert "error" not in box, box.get("error")
        assert box["eps"] == pytest.approx(ledger.spent())
