"""The ledger's schema version: older files are migrated in place, never discarded.

A discarded or misread ledger is a reset budget, so the committed
``tests/vectors/ledger_v1.sqlite`` (written by the version 1 code, see its
generator) must open under the current code with every row kept and its
pending round still charged; and rounds are named by (federation, run,
round), so two federations or two runs sharing one file never collide while
the budget stays the site's across all of them.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.dp import DPEvent, PrivacyLedger, epsilon
from securefl.errors import BudgetExhaustedError, ConfigError, ProtocolError

VECTOR = Path(__file__).parents[1] / "vectors" / "ledger_v1.sqlite"
ROUND = DPEvent(
    noise_multiplier=1.0, sample_rate=0.02, steps=50, max_grad_norm=1.0, secure_rng=True
)


def _open(path: Path, budget: float = 8.0) -> PrivacyLedger:
    return PrivacyLedger(path, site="site-a", epsilon_budget=budget, delta=1e-5, accountant="rdp")


def test_a_version_1_ledger_is_migrated_in_place_and_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    shutil.copy(VECTOR, path)
    before = sqlite3.connect(path).execute("SELECT round_id, status, event FROM events").fetchall()
    assert [r[:2] for r in before] == [(1, "committed"), (2, "committed"), (3, "pending")]
    with _open(path) as ledger:
        history = ledger.history()
        assert [(e.federation, e.run, e.round_id, e.status) for e in history] == [
            ("", "", 1, "committed"),
            ("", "", 2, "committed"),
            ("", "", 3, "pending"),
        ]
        # the crash's pending round is still charged in full after the migration
        assert ledger.spent() == pytest.approx(epsilon([ROUND] * 3, delta=1e-5, accountant="rdp"))
        # the old rounds' names stay taken; the same numbers of a named run are new rounds
        with pytest.raises(ProtocolError, match="never reused"):
            ledger.reserve(2, ROUND)
        ledger.commit(ledger.reserve(2, ROUND, federation="fed", run="ab"), ROUND)
    meta = dict(sqlite3.connect(path).execute("SELECT key, value FROM meta").fetchall())
    assert meta["schema_version"] == "2"
    with _open(path) as again:  # a migrated file opens as it is, nothing migrated twice
        assert len(again.history()) == 4


def test_a_ledger_of_an_unknown_newer_schema_is_refused_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    shutil.copy(VECTOR, path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
    with pytest.raises(ConfigError, match="schema version '9'"):
        _open(path)
    rows = sqlite3.connect(path).execute("SELECT count(*) FROM events").fetchone()
    assert rows == (3,)  # untouched


def test_two_federations_share_one_ledger_and_one_budget(tmp_path: Path) -> None:
    budget = (
        epsilon([ROUND] * 3, delta=1e-5, accountant="rdp")
        + epsilon([ROUND] * 4, delta=1e-5, accountant="rdp")
    ) / 2
    with _open(tmp_path / "l.sqlite", budget) as ledger:
        ledger.commit(ledger.reserve(1, ROUND, federation="cardio", run="01"), ROUND)
        ledger.commit(ledger.reserve(1, ROUND, federation="onco", run="01"), ROUND)
        ledger.commit(ledger.reserve(1, ROUND, federation="cardio", run="02"), ROUND)
        with pytest.raises(ProtocolError, match="never reused"):
            ledger.reserve(1, ROUND, federation="onco", run="01")
        # the budget is the site's across every federation and run: the fourth is refused
        with pytest.raises(BudgetExhaustedError):
            ledger.reserve(2, ROUND, federation="onco", run="01")


_names = st.text(alphabet="abc0", min_size=0, max_size=3)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_names, _names, st.integers(0, 3)), min_size=1, max_size=8))
def test_round_keys_collide_only_when_federation_run_and_round_all_match(
    tmp_path_factory: pytest.TempPathFactory, keys: list[tuple[str, str, int]]
) -> None:
    path = tmp_path_factory.mktemp("ledger") / "l.sqlite"
    with _open(path, budget=1e6) as ledger:
        taken: set[tuple[str, str, int]] = set()
        for federation, run, round_id in keys:
            key = (federation, run, round_id)
            if key in taken:
                with pytest.raises(ProtocolError):
                    ledger.reserve(round_id, ROUND, federation=federation, run=run)
            else:
                r = ledger.reserve(round_id, ROUND, federation=federation, run=run)
                assert (r.federation, r.run, r.round_id) == key
                taken.add(key)
        assert {(e.federation, e.run, e.round_id) for e in ledger.history()} == taken
