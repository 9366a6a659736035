"""A site's privacy ledger: the on-disk record that says "no" before training.

The ledger is the site's own defence, so it fails closed:

* **Reserve before training.** :meth:`PrivacyLedger.reserve` computes ε as if
  the planned round were already spent (on top of every committed *and*
  pending round) and refuses with :class:`~securefl.errors.BudgetExhaustedError`
  if that passes the budget. Otherwise it writes a *pending* row, durably,
  before a single gradient is computed.
* **Crashes count as spent.** A pending row left behind by a crash stays in
  the ledger and is charged in full after a restart (:meth:`pending` lists
  them). The process died somewhere during training; we cannot know how many
  steps ran, so we assume all of them.
* **Commit what really happened.** :meth:`commit` replaces the pending row with
  the actual event (the site may have taken a different number of steps). If
  the actual event passes the budget it is *still recorded* (the privacy was
  spent) and BudgetExhaustedError is raised so that the update is not released.
* **The terms cannot drift.** The site name, δ and accountant are fixed when
  the ledger is created; reopening with different ones raises ConfigError.
  The budget may be lowered freely, but raised only with an explicit
  ``allow_budget_increase=True``.

Storage is SQLite (stdlib): WAL journal, ``synchronous=FULL`` so a commit
reaches the disk before it returns, and every check-then-write runs inside one
``BEGIN IMMEDIATE`` transaction, so two processes sharing a ledger cannot both
pass the budget check with the same headroom.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from securefl.dp import _ledger_schema as schema
from securefl.dp.accounting import ACCOUNTANTS, epsilon
from securefl.dp.events import DPEvent
from securefl.errors import BudgetExhaustedError, ConfigError, ProtocolError

__all__ = ["LedgerEntry", "PrivacyLedger", "Reservation"]

#: :meth:`PrivacyLedger.remaining_rounds` stops counting here.
MAX_COUNTED_ROUNDS = 1_000


@dataclass(frozen=True, kw_only=True)
class Reservation:
    """Proof that a round was admitted; hand it back to :meth:`PrivacyLedger.commit`.

    ``epsilon_if_spent`` is ε after the round if it runs as planned. The
    token ties the reservation to one pending row of one ledger. A round is
    named by (``federation``, ``run``, ``round_id``).
    """

    round_id: int
    planned: DPEvent
    epsilon_if_spent: float
    token: str
    federation: str = ""
    run: str = ""
    model_hash: str = ""


@dataclass(frozen=True, kw_only=True)
class LedgerEntry:
    """One row of the ledger. ``status`` is ``"pending"`` or ``"committed"``.

    ``federation`` and ``run`` are ``""`` for rows written before the ledger
    kept them (schema version 1).
    """

    round_id: int
    event: DPEvent
    epsilon_after: float
    status: str
    timestamp: datetime
    federation: str = ""
    run: str = ""
    model_hash: str = ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()  # noqa: UP017 (no datetime.UTC on 3.10)


class PrivacyLedger:
    """Per-site privacy budget, persisted in SQLite at ``path``.

    Args:
        path: the database file (created if missing).
        site: this site's name; fixed at creation.
        epsilon_budget: the most ε this site will ever spend at ``delta``.
        delta: the δ at which ε is computed; fixed at creation.
        accountant: one of ``ACCOUNTANTS``; fixed at creation.
        allow_budget_increase: permit a budget above the stored one. Off by
            default: raising a budget is a governance decision, not a restart
            option.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        site: str,
        epsilon_budget: float,
        delta: float,
        accountant: str = "prv",
        allow_budget_increase: bool = False,
    ) -> None:
        if not isinstance(site, str) or not site:
            raise ConfigError("PrivacyLedger.site must be a non-empty string")
        if (
            isinstance(epsilon_budget, bool)
            or not isinstance(epsilon_budget, (int, float))
            or not 0 < epsilon_budget < float("inf")
        ):
            raise ConfigError(f"PrivacyLedger.epsilon_budget must be > 0, got {epsilon_budget!r}")
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
            raise ConfigError(f"PrivacyLedger.delta must be in (0, 1), got {delta!r}")
        if accountant not in ACCOUNTANTS:
            raise ConfigError(
                f"PrivacyLedger.accountant must be one of {ACCOUNTANTS}, got {accountant!r}"
            )
        self.path = Path(path)
        self.site = site
        self.delta = float(delta)
        self.accountant = accountant
        # One connection shared by the threads of one site (the training loop and
        # whoever reports on it); every use goes through ``self._lock``.
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, timeout=30.0, check_same_thread=False
        )
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._transaction() as cur:
                schema.create_or_migrate(cur, self.path)
                terms = {"site": self.site, "delta": repr(self.delta), "accountant": accountant}
                self.epsilon_budget = schema.load_meta(
                    cur, self.path, terms, float(epsilon_budget), allow_budget_increase
                )
        except BaseException:
            self._conn.close()
            raise

    # -- lifecycle --------------------------------------------------------------

    def close(self) -> None:
        """Close the database. Committed and pending rows are already on disk."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> PrivacyLedger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    # -- reading ----------------------------------------------------------------

    def _rows(self, cur: sqlite3.Cursor | None = None) -> list[LedgerEntry]:
        with self._lock:
            source = cur if cur is not None else self._conn
            rows = source.execute(
                "SELECT round_id, event, epsilon_after, status, timestamp, federation, run, "
                "model_hash FROM events ORDER BY seq"
            ).fetchall()
        return [
            LedgerEntry(
                round_id=int(r[0]),
                event=DPEvent.from_dict(json.loads(r[1])),
                epsilon_after=float(r[2]),
                status=str(r[3]),
                timestamp=datetime.fromisoformat(r[4]),
                federation=str(r[5]),
                run=str(r[6]),
                model_hash=str(r[7]),
            )
            for r in rows
        ]

    def history(self) -> list[LedgerEntry]:
        """Every row, committed and pending, in the order they were reserved."""
        return self._rows()

    def pending(self) -> list[LedgerEntry]:
        """Reserved rounds never committed (e.g. left by a crash); charged in full."""
        return [e for e in self._rows() if e.status == "pending"]

    def events(self) -> list[DPEvent]:
        """Committed and pending events, in order: exactly what ε is computed over."""
        return [e.event for e in self._rows()]

    def _epsilon(self, events: list[DPEvent]) -> float:
        return epsilon(events, delta=self.delta, accountant=self.accountant)

    def spent(self) -> float:
        """ε spent so far, counting pending rounds as spent."""
        return self._epsilon(self.events())

    def remaining_rounds(self, planned: DPEvent) -> int:
        """How many more rounds like ``planned`` fit in the budget.

        Capped at 1 000 rounds, more than a federation runs.
        """
        base = self.events()

        def fits(k: int) -> bool:
            return self._epsilon(base + [planned] * k) <= self.epsilon_budget

        if not fits(1):
            return 0
        lo, hi = 1, 2
        while hi <= MAX_COUNTED_ROUNDS and fits(hi):
            lo, hi = hi, hi * 2
        if hi > MAX_COUNTED_ROUNDS:
            if fits(MAX_COUNTED_ROUNDS):
                return MAX_COUNTED_ROUNDS
            hi = MAX_COUNTED_ROUNDS
        return self._bisect(fits, lo, hi)

    @staticmethod
    def _bisect(fits: Callable[[int], bool], lo: int, hi: int) -> int:
        # Invariant: fits(lo) and not fits(hi).
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid
        return lo

    # -- writing ----------------------------------------------------------------

    def reserve(
        self,
        round_id: int,
        planned: DPEvent,
        *,
        federation: str = "",
        run: str = "",
        model_hash: str = "",
    ) -> Reservation:
        """Admit round ``round_id`` of ``federation``'s ``run`` or refuse it, before any training.

        The budget is the site's across every federation and run in this
        file; only the round's name is scoped to (federation, run).
        ``model_hash`` is kept with the row for the record of a round a crash
        interrupts.

        Raises:
            BudgetExhaustedError: the planned round would pass the budget.
            ProtocolError: the round is already in the ledger (never reused).
            ConfigError: the accountant cannot bound ``planned``.
        """
        schema.check_round_id(round_id)
        if not all(isinstance(x, str) for x in (federation, run, model_hash)):
            raise ConfigError("federation and run must be strings")
        if not isinstance(planned, DPEvent):
            raise ConfigError(f"planned must be a DPEvent, got {type(planned).__name__}")
        where = schema.round_name(federation, run, round_id)
        # The first accountant call of a process imports the accountants (torch
        # among them): seconds on a loaded machine. Do it before taking the
        # write lock, so another process of this site never waits that long.
        self._epsilon([planned])
        with self._transaction() as cur:
            self._refuse_reuse(cur, federation, run, round_id)
            recorded = [e.event for e in self._rows(cur)]
            after = self._epsilon([*recorded, planned])
            if after > self.epsilon_budget:
                spent = self._epsilon(recorded)
                raise BudgetExhaustedError(
                    f"site {self.site!r}: {where} refused: spent ε={spent:.4f}, "
                    f"would be ε={after:.4f}, budget ε={self.epsilon_budget:.4f} "
                    f"(δ={self.delta:g}, accountant={self.accountant})"
                )
            token = secrets.token_hex(16)
            cur.execute(
                "INSERT INTO events (federation, run, round_id, status, event, epsilon_after, "
                "timestamp, token, model_hash) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
                (
                    federation,
                    run,
                    round_id,
                    json.dumps(planned.to_dict()),
                    after,
                    _now(),
                    token,
                    model_hash,
                ),
            )
        return Reservation(
            round_id=round_id,
            planned=planned,
            epsilon_if_spent=after,
            token=token,
            federation=federation,
            run=run,
            model_hash=model_hash,
        )

    def commit(self, reservation: Reservation, actual: DPEvent) -> float:
        """Replace the pending row with what really ran; return ε after the round.

        Raises:
            BudgetExhaustedError: the actual round passed the budget. The row is
                recorded anyway (the privacy is spent); do not release the update.
            ProtocolError: the reservation is unknown, stale or already committed.
        """
        if not isinstance(actual, DPEvent):
            raise ConfigError(f"actual must be a DPEvent, got {type(actual).__name__}")
        key = (reservation.federation, reservation.run, reservation.round_id)
        where = schema.round_name(*key)
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT status, token FROM events WHERE federation = ? AND run = ? "
                "AND round_id = ?",
                key,
            ).fetchone()
            if row is None or row[1] != reservation.token or row[0] != "pending":
                raise ProtocolError(
                    f"site {self.site!r}: no pending reservation for {where} "
                    f"matches this one (unknown, stale or committed)"
                )
            others = [e.event for e in self._rows(cur) if (e.federation, e.run, e.round_id) != key]
            after = self._epsilon([*others, actual])
            cur.execute(
                "UPDATE events SET status = 'committed', event = ?, epsilon_after = ?, "
                "timestamp = ? WHERE federation = ? AND run = ? AND round_id = ?",
                (json.dumps(actual.to_dict()), after, _now(), *key),
            )
        if after > self.epsilon_budget:
            raise BudgetExhaustedError(
                f"site {self.site!r}: {where} ran over budget: "
                f"ε={after:.4f} > budget ε={self.epsilon_budget:.4f}; recorded as spent, "
                f"the update must not be released"
            )
        return after

    def _refuse_reuse(self, cur: sqlite3.Cursor, federation: str, run: str, round_id: int) -> None:
        row = cur.execute(
            "SELECT status FROM events WHERE federation = ? AND run = ? AND round_id = ?",
            (federation, run, round_id),
        ).fetchone()
        if row is not None:
            raise ProtocolError(
                f"site {self.site!r}: {schema.round_name(federation, run, round_id)} is "
                f"already in the ledger ({row[0]}); a round id is never reused"
            )

    def pending_reservation(self, entry: LedgerEntry) -> Reservation:
        """The reservation behind a pending row (one a crash left), to commit it as planned.

        Why: a restarted site cannot know how many steps ran before the crash,
        so it commits the row in full (:meth:`commit` with ``entry.event``)
        and signs the record the audit needs; the ε does not change.
        """
        key = (entry.federation, entry.run, entry.round_id)
        with self._lock:
            row = self._conn.execute(
                "SELECT token, epsilon_after FROM events WHERE federation = ? AND run = ? "
                "AND round_id = ? AND status = 'pending'",
                key,
            ).fetchone()
        if row is None:
            raise ProtocolError(f"site {self.site!r}: {schema.round_name(*key)} is not pending")
        return Reservation(
            round_id=entry.round_id,
            planned=entry.event,
            epsilon_if_spent=float(row[1]),
            token=str(row[0]),
            federation=entry.federation,
            run=entry.run,
            model_hash=entry.model_hash,
        )
