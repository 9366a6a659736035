"""Two processes race for the last round of one ledger: exactly one wins.

The ledger takes SQLite's write lock *before* it reads what was spent
(``BEGIN IMMEDIATE``). With a deferred ``BEGIN`` both processes would read the
same history, both decide the round fits, and the loser fails on a lock error
(or, with another engine, both would spend). Each process here is slowed down
between reading and writing so that the two reads overlap whenever the lock is
taken late.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from securefl.dp import DPEvent, PrivacyLedger, epsilon

DELTA = 1e-5
ROUND = DPEvent(
    noise_multiplier=1.0, sample_rate=0.02, steps=50, max_grad_norm=1.0, secure_rng=False
)


def _budget_for_one_round() -> float:
    one = epsilon([ROUND], delta=DELTA, accountant="rdp")
    two = epsilon([ROUND] * 2, delta=DELTA, accountant="rdp")
    return (one + two) / 2


def _contender(path: str, round_id: int, gate: str, budget: float) -> str:
    """Open the shared ledger, wait for the other process, reserve one round."""
    from securefl.errors import BudgetExhaustedError

    slow_epsilon = PrivacyLedger._epsilon

    def _slow(self: PrivacyLedger, events: list[DPEvent]) -> float:
        time.sleep(0.5)  # widen the window between reading the history and writing
        return slow_epsilon(self, events)

    ledger = PrivacyLedger(
        Path(path), site="site-a", epsilon_budget=budget, delta=DELTA, accountant="rdp"
    )
    PrivacyLedger._epsilon = _slow  # type: ignore[method-assign]
    Path(gate, f"ready-{round_id}").touch()
    while len(list(Path(gate).glob("ready-*"))) < 2:
        time.sleep(0.01)
    try:
        ledger.reserve(round_id, ROUND)
    except BudgetExhaustedError:
        return "refused"
    except Exception as exc:  # any other outcome is the failure the test reports
        return f"error: {type(exc).__name__}: {exc}"
    finally:
        ledger.close()
    return "admitted"


def test_two_process_race_for_the_last_round_admits_exactly_one(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    budget = _budget_for_one_round()
    PrivacyLedger(path, site="site-a", epsilon_budget=budget, delta=DELTA, accountant="rdp").close()
    gate = tmp_path / "gate"
    gate.mkdir()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        outcomes = pool.starmap(
            _contender, [(str(path), 0, str(gate), budget), (str(path), 1, str(gate), budget)]
        )
    assert sorted(outcomes) == ["admitted", "refused"], outcomes
    with PrivacyLedger(
        path, site="site-a", epsilon_budget=budget, delta=DELTA, accountant="rdp"
    ) as ledger:
        assert len(ledger.pending()) == 1
        assert ledger.spent() <= budget
