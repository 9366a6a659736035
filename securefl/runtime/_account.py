"""A site's privacy for each round: reserve before training, stop overruns, charge what ran.

Why it is one object: three things must happen in a fixed order and must not
drift apart. The ledger admits the round (a durable pending row) before any
gradient is computed; the optimizer may take at most the steps that were
admitted; and what is committed to the ledger and to the signed record is the
number of noisy steps that really ran. A loop that trains longer than planned
is stopped at the first extra step, with the steps it did take charged,
instead of quietly spending the budget of the rounds to come.

A round is named by (federation, run, round). A site killed inside a round
leaves a pending ledger row (or, killed between the ledger and the record, a
committed row without its record); :meth:`RoundAccount.settle_interrupted`,
run when the site starts again, charges such a row in full as planned and
signs its record, so the ledger, the records and an audit agree on ε.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from securefl.config import DPConfig
from securefl.dp import PrivacyLedger, planned_event
from securefl.dp.events import DPEvent
from securefl.dp.ledger import Reservation
from securefl.dp.privatize import PrivateTraining
from securefl.errors import ConfigError, ProtocolError, SecureFLError

__all__ = ["RoundAccount"]

log = logging.getLogger(__name__)


class RoundAccount:
    """Privacy bookkeeping of one site across rounds.

    ``private`` is the site's DP-SGD wrapping; its optimizer is guarded so
    that a noisy step outside an open round, or beyond the round's planned
    steps, raises :class:`ConfigError` *before* clipping and noise.
    """

    def __init__(
        self,
        *,
        ledger: PrivacyLedger,
        dp: DPConfig,
        local_epochs: int,
        private: PrivateTraining,
        dataset_size: int,
        records: Any = None,
        federation: str = "",
    ) -> None:
        self.ledger = ledger
        self.dp = dp
        self.local_epochs = local_epochs
        self.private = private
        self.dataset_size = dataset_size
        self.records = records
        self.federation = federation
        self._reservation: Reservation | None = None
        self._guard_optimizer(private.optimizer)

    @property
    def open_round(self) -> int | None:
        """The round whose privacy is reserved and not yet charged."""
        return self._reservation.round_id if self._reservation else None

    def check_round_id(self, round_id: int, run: str = "") -> None:
        """Refuse a round id not above every round of ``run`` in the ledger and the records.

        Why before anything else: the ledger alone admits any unused id, but
        the signed record of a round below the last one cannot be written (a
        chain's round ids increase), so a server that goes back to round 3
        after round 5 would have the site train and be charged with no record
        an audit can see. Refused here, it costs nothing. Round numbers of
        another run (a new server state folder) are another name space.
        """
        last = max(
            (
                e.round_id
                for e in self.ledger.history()
                if (e.federation, e.run) == (self.federation, run)
            ),
            default=None,
        )
        last_of_run = getattr(self.records, "last_round_of", None)
        recorded = last_of_run(run) if last_of_run is not None else None
        if recorded is not None and (last is None or recorded > last):
            last = recorded
        if last is not None and round_id <= last:
            raise ProtocolError(
                f"the server opened round {round_id}, but this site already took part in "
                f"round {last}; round ids only increase (nothing was trained or spent)"
            )

    def took_part(self, round_id: int, run: str, model_hash: str) -> bool:
        """Whether the ledger holds this very round: (federation, run, round) and its model.

        Why the model too: a round start that names a round this site already
        took, with the model it took it with, is the same message delivered
        again (a restarted process is first handed what the server queued for
        the one that died); one re-opening that round with another model is a
        server going back, which :meth:`check_round_id` refuses.
        """
        return any(
            (e.federation, e.run, e.round_id, e.model_hash)
            == (self.federation, run, round_id, model_hash)
            and e.status == "committed"
            and model_hash != ""
            for e in self.ledger.history()
        )

    def reserve(self, round_id: int, model_hash: str, run: str = "") -> None:
        """Admit ``round_id`` of ``run`` (or raise BudgetExhaustedError) and arm the guard."""
        if self._reservation is not None:
            raise ProtocolError(f"round {self._reservation.round_id} is still open")
        self.check_round_id(round_id, run)
        self._reservation = self.ledger.reserve(
            round_id,
            self.planned_event(),
            federation=self.federation,
            run=run,
            model_hash=model_hash,
        )
        self._on_reserved()

    def _on_reserved(self) -> None:
        """The round is admitted: count its optimizer steps from zero."""
        self.private.reset_steps()

    def planned_event(self) -> DPEvent:
        """The event a round is admitted with: ``local_epochs`` epochs of DP-SGD."""
        return planned_event(
            noise_multiplier=self.private.noise_multiplier,
            sample_rate=self.private.sample_rate,
            epochs=self.local_epochs,
            max_grad_norm=self.dp.max_grad_norm,
            secure_rng=self.private.secure_rng,
        )

    def expected_batch_size(self) -> int:
        """The expected batch a record states (q × the site's records)."""
        return max(1, round(self.private.sample_rate * self.dataset_size))

    def actual_event(self) -> DPEvent:
        """The event of the steps taken so far this round (at least one: the round ran)."""
        private = self.private
        return DPEvent(
            noise_multiplier=private.noise_multiplier,
            sample_rate=private.sample_rate,
            steps=max(1, private.steps_taken()),  # a refused first step is charged as one
            max_grad_norm=private.max_grad_norm,
            secure_rng=private.secure_rng,
        )

    def charge(self) -> tuple[float, DPEvent]:
        """Commit the steps taken to the ledger and the signed record; return (ε, event).

        Raises BudgetExhaustedError (from the ledger) if the round ran over the
        budget: it is recorded as spent and the update must not be released.
        """
        if self._reservation is None:
            raise ProtocolError("no round is open: nothing to charge")
        reservation, self._reservation = self._reservation, None
        actual = self.actual_event()
        epsilon = self.ledger.commit(reservation, actual)
        self._record(reservation, actual, epsilon)
        return epsilon, actual

    def _record(self, reservation: Reservation, event: DPEvent, epsilon: float) -> None:
        if self.records is None:
            return
        self.records.append(
            round_id=reservation.round_id,
            run=reservation.run,
            event=event,
            accountant=self.dp.accountant,
            delta=self.dp.delta,
            epsilon=epsilon,
            epsilon_budget=self.dp.epsilon,
            model_hash=reservation.model_hash,
            dataset_size=self.dataset_size,
            expected_batch_size=self.expected_batch_size(),
        )

    def settle_interrupted(self) -> list[int]:
        """Charge and record the rounds of this federation a crash left open; return their ids.

        Fail closed: a pending row (the process died while training, or
        before committing) is committed *as planned*, in full, because
        nobody knows how many steps ran; a committed row whose record was
        never written (killed between the two) gets its record. The ε does
        not change (the ledger already counted the pending row); what changes
        is that the signed chain now shows it, so ``securefl audit`` recomputes
        the ε the ledger holds.
        """
        settled: list[int] = []
        for entry in self.ledger.history():
            if entry.federation != self.federation or entry.federation == "":
                continue
            has_record = self.records is None or self.records.recorded(entry.run, entry.round_id)
            if entry.status == "committed" and has_record:
                continue
            reservation = (
                self.ledger.pending_reservation(entry) if entry.status == "pending" else None
            )
            epsilon = entry.epsilon_after
            if reservation is not None:
                try:
                    epsilon = self.ledger.commit(reservation, entry.event)
                except SecureFLError as exc:  # over a lowered budget: recorded as spent anyway
                    log.error("round %d: %s", entry.round_id, exc)
                    epsilon = self.ledger.spent()
            else:
                reservation = Reservation(
                    round_id=entry.round_id,
                    planned=entry.event,
                    epsilon_if_spent=entry.epsilon_after,
                    token="",
                    federation=entry.federation,
                    run=entry.run,
                    model_hash=entry.model_hash,
                )
            if not has_record:
                self._record(reservation, entry.event, epsilon)
            settled.append(entry.round_id)
        return settled

    def charge_refused(self) -> None:
        """Commit and record the steps that ran in a round whose update will not be sent.

        Called when the round fails after its reservation (the update is
        refused, the user's loop raised or stopped). The privacy was spent; a
        pending row would be charged in full with no signed record. Errors here
        are logged, not raised: the caller is already raising the reason.
        """
        if self._reservation is None:
            return
        try:
            self.charge()
        except SecureFLError as exc:
            log.error("round charged but not recorded cleanly: %s", exc)

    # -- the step guard -----------------------------------------------------------

    def _guard_optimizer(self, optimizer: Any) -> None:
        """Check each step before Opacus clips and noises it (``pre_step``)."""
        pre_step: Callable[..., Any] = optimizer.pre_step

        def guarded_pre_step(*args: Any, **kwargs: Any) -> Any:
            if not _skipped(optimizer):
                self._admit_step()
            try:
                return pre_step(*args, **kwargs)
            except SecureFLError:
                # a refused step (non-finite gradients) ends the round here: what ran is
                # charged and recorded now, not whenever the round's generator is closed
                self.charge_refused()
                raise

        optimizer.pre_step = guarded_pre_step

    def _admit_step(self) -> None:
        if self._reservation is None:
            raise ConfigError(
                "a private optimizer step outside a round would spend privacy no ledger "
                "admitted; train only inside `for rnd in site.rounds(model)`"
            )
        limit = self._reservation.planned.steps
        if self.private.steps_taken() < limit:
            return
        round_id = self._reservation.round_id
        self.charge()  # the steps that did run are spent; the extra one never runs
        raise ConfigError(
            f"round {round_id}: the training loop went past the {limit} noisy steps planned "
            f"for train.local_epochs={self.local_epochs} ({limit // self.local_epochs} per "
            f"epoch); those {limit} steps are charged and nothing is sent. Train "
            f"local_epochs epochs per round, or set train.local_epochs to what the loop runs"
        )


def _skipped(optimizer: Any) -> bool:
    """Opacus skips (accumulates without noise) some physical batches of a large one."""
    check = getattr(optimizer, "_check_skip_next_step", None)
    return bool(check(pop_next=False)) if check is not None else False
