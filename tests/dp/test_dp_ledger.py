"""The privacy ledger: fail closed before training, across restarts and crashes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from securefl.dp import DPEvent, PrivacyLedger, epsilon
from securefl.errors import BudgetExhaustedError, ConfigError, ProtocolError

DELTA = 1e-5
ROUND = DPEvent(
    noise_multiplier=1.0, sample_rate=0.02, steps=50, max_grad_norm=1.0, secure_rng=False
)


def budget_for(rounds: int, accountant: str = "rdp") -> float:
    """A budget that admits exactly ``rounds`` rounds like ROUND (halfway to the next)."""
    fits = epsilon([ROUND] * rounds, delta=DELTA, accountant=accountant)
    over = epsilon([ROUND] * (rounds + 1), delta=DELTA, accountant=accountant)
    return (fits + over) / 2


def open_ledger(path: Path, budget: float, **kw: object) -> PrivacyLedger:
    args: dict = {"site": "site-a", "epsilon_budget": budget, "delta": DELTA, "accountant": "rdp"}
    args.update(kw)
    return PrivacyLedger(path, **args)


def test_reserve_commit_records_epsilon_after_each_round(tmp_path: Path) -> None:
    with open_ledger(tmp_path / "l.db", budget_for(3)) as ledger:
        r0 = ledger.reserve(0, ROUND)
        assert [e.status for e in ledger.history()] == ["pending"]
        eps0 = ledger.commit(r0, ROUND)
        eps1 = ledger.commit(ledger.reserve(1, ROUND), ROUND)
        assert eps0 == pytest.approx(epsilon([ROUND], delta=DELTA, accountant="rdp"))
        assert eps1 == pytest.approx(epsilon([ROUND] * 2, delta=DELTA, accountant="rdp"))
        hist = ledger.history()
        assert [(h.round_id, h.status, h.epsilon_after) for h in hist] == [
            (0, "committed", eps0),
            (1, "committed", eps1),
        ]
        assert ledger.events() == [ROUND, ROUND]
        assert ledger.spent() == pytest.approx(eps1)
        assert hist[0].timestamp.tzinfo is not None


def test_round_that_would_pass_the_budget_is_refused_before_training(tmp_path: Path) -> None:
    budget = budget_for(2)
    with open_ledger(tmp_path / "l.db", budget) as ledger:
        for rnd in range(2):
            ledger.commit(ledger.reserve(rnd, ROUND), ROUND)
        with pytest.raises(BudgetExhaustedError) as info:
            ledger.reserve(2, ROUND)
        spent = epsilon([ROUND] * 2, delta=DELTA, accountant="rdp")
        would = epsilon([ROUND] * 3, delta=DELTA, accountant="rdp")
        message = str(info.value)
        assert f"{spent:.4f}" in message and f"{would:.4f}" in message
        assert f"{budget:.4f}" in message
        assert [h.round_id for h in ledger.history()] == [0, 1]  # nothing written


def test_refusal_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    budget = budget_for(2)
    with open_ledger(path, budget) as ledger:
        for rnd in range(2):
            ledger.commit(ledger.reserve(rnd, ROUND), ROUND)
    with open_ledger(path, budget) as reopened:
        assert reopened.spent() == pytest.approx(
            epsilon([ROUND] * 2, delta=DELTA, accountant="rdp")
        )
        with pytest.raises(BudgetExhaustedError):
            reopened.reserve(2, ROUND)


def test_pending_reservation_from_a_crash_counts_as_spent(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    budget = budget_for(2)
    crashed = open_ledger(path, budget)
    crashed.commit(crashed.reserve(0, ROUND), ROUND)
    crashed.reserve(1, ROUND)  # training starts ... and the process dies: no commit
    del crashed
    with open_ledger(path, budget) as ledger:
        assert [p.round_id for p in ledger.pending()] == [1]
        assert ledger.spent() == pytest.approx(epsilon([ROUND] * 2, delta=DELTA, accountant="rdp"))
        with pytest.raises(BudgetExhaustedError):
            ledger.reserve(2, ROUND)


def test_pending_reservation_is_charged_to_the_next_reserve(tmp_path: Path) -> None:
    with open_ledger(tmp_path / "l.db", budget_for(1)) as ledger:
        ledger.reserve(0, ROUND)
        with pytest.raises(BudgetExhaustedError):
            ledger.reserve(1, ROUND)


def test_commit_over_budget_is_recorded_and_raises(tmp_path: Path) -> None:
    budget = budget_for(1)
    longer = DPEvent(
        noise_multiplier=1.0, sample_rate=0.02, steps=200, max_grad_norm=1.0, secure_rng=False
    )
    with open_ledger(tmp_path / "l.db", budget) as ledger:
        reservation = ledger.reserve(0, ROUND)
        with pytest.raises(BudgetExhaustedError, match="must not be released"):
            ledger.commit(reservation, longer)
        (entry,) = ledger.history()
        assert entry.status == "committed" and entry.event == longer
        assert entry.epsilon_after > budget
        assert ledger.spent() > budget


def test_round_id_is_never_reused(tmp_path: Path) -> None:
    with open_ledger(tmp_path / "l.db", budget_for(5)) as ledger:
        r0 = ledger.reserve(0, ROUND)
        with pytest.raises(ProtocolError, match="never reused"):
            ledger.reserve(0, ROUND)  # still pending
        ledger.commit(r0, ROUND)
        with pytest.raises(ProtocolError, match="never reused"):
            ledger.reserve(0, ROUND)  # committed
        with pytest.raises(ProtocolError):
            ledger.commit(r0, ROUND)  # a reservation commits once


def test_reservation_from_another_ledger_is_refused(tmp_path: Path) -> None:
    with open_ledger(tmp_path / "a.db", 10.0) as a, open_ledger(tmp_path / "b.db", 10.0) as b:
        b.reserve(0, ROUND)
        with pytest.raises(ProtocolError):
            b.commit(a.reserve(0, ROUND), ROUND)


@pytest.mark.parametrize(
    ("key", "value"),
    [("site", "site-b"), ("delta", 1e-6), ("accountant", "prv")],
)
def test_changed_terms_are_refused_on_reopen(tmp_path: Path, key: str, value: object) -> None:
    path = tmp_path / "l.db"
    open_ledger(path, 5.0).close()
    with pytest.raises(ConfigError, match=key):
        open_ledger(path, 5.0, **{key: value})


def test_budget_increase_needs_explicit_permission(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    open_ledger(path, 5.0).close()
    with pytest.raises(ConfigError, match="allow_budget_increase"):
        open_ledger(path, 6.0)
    with open_ledger(path, 4.0) as lowered:  # lowering is always allowed
        assert lowered.epsilon_budget == 4.0
    with pytest.raises(ConfigError):
        open_ledger(path, 5.0)  # the lowered budget is now the stored one
    with open_ledger(path, 6.0, allow_budget_increase=True) as raised:
        assert raised.epsilon_budget == 6.0


def test_remaining_rounds_matches_what_reserve_admits(tmp_path: Path) -> None:
    with open_ledger(tmp_path / "l.db", budget_for(3)) as ledger:
        ledger.commit(ledger.reserve(0, ROUND), ROUND)
        assert ledger.remaining_rounds(ROUND) == 2
        ledger.reserve(1, ROUND)
        ledger.reserve(2, ROUND)
        assert ledger.remaining_rounds(ROUND) == 0
        with pytest.raises(BudgetExhaustedError):
            ledger.reserve(3, ROUND)


def test_gaussian_release_is_charged_like_any_event(tmp_path: Path) -> None:
    stats = DPEvent(
        noise_multiplier=5.0,
        sample_rate=1.0,
        steps=1,
        max_grad_norm=1.0,
        secure_rng=False,
        kind="gaussian",
    )
    with open_ledger(tmp_path / "l.db", 10.0) as ledger:
        ledger.commit(ledger.reserve(0, stats), stats)
        ledger.commit(ledger.reserve(1, ROUND), ROUND)
        assert ledger.events() == [stats, ROUND]
        assert ledger.spent() == pytest.approx(
            epsilon([stats, ROUND], delta=DELTA, accountant="rdp")
        )
        assert ledger.spent() > epsilon([ROUND], delta=DELTA, accountant="rdp")


def test_two_handles_on_one_file_see_each_others_reservations(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    budget = budget_for(1)
    with open_ledger(path, budget) as first, open_ledger(path, budget) as second:
        first.reserve(0, ROUND)
        with pytest.raises(BudgetExhaustedError):
            second.reserve(1, ROUND)


def test_ledger_uses_wal_journal(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    open_ledger(path, 5.0).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_default_prv_ledger_refuses_over_budget(tmp_path: Path) -> None:
    budget = budget_for(1, accountant="prv")
    with PrivacyLedger(
        tmp_path / "l.db", site="site-a", epsilon_budget=budget, delta=DELTA
    ) as ledger:
        assert ledger.accountant == "prv"
        ledger.commit(ledger.reserve(0, ROUND), ROUND)
        with pytest.raises(BudgetExhaustedError):
            ledger.reserve(1, ROUND)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epsilon_budget": 0.0},
        {"epsilon_budget": -1.0},
        {"delta": 0.0},
        {"site": ""},
        {"accountant": "moments"},
    ],
)
def test_invalid_ledger_settings_are_refused(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        open_ledger(tmp_path / "l.db", 5.0, **kwargs)
