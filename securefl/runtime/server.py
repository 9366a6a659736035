"""The server's round driver: a sans-IO state machine.

It takes envelopes (and "the deadline passed") and returns envelopes; the
caller owns the clock and the transport. That is why the same driver runs
in ``simulate``, in tests and behind HTTPS. Sites may join (``fed/hello``)
or leave (``fed/bye``) at any time; they take part from the next round.

A mode whose server half needs material from a site first (``he``: the
keymaker's signed public context) gives the driver a pre-round key step
(:class:`PreRoundKeys`, e.g. :class:`securefl.he.KeyRelay`) and a way to build
the mode from that material; no round opens before the step is ready.

A round's summary, the patience rule and the per-payload encoding of what is
sent are kept by ``_rounds``. Durability is the caller's: a
:class:`~securefl.runtime._rounds.RoundJournal` (a server state folder) is
told each round id before the round opens and each round once it closed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
from collections.abc import Callable, Collection
from typing import Any

from securefl.aggregation.base import AggregationMode, RoundContext, ServerAggregator
from securefl.config import RoundConfig
from securefl.errors import AbortError, ConfigError, ProtocolError, SecureFLError
from securefl.params import ParamSpec
from securefl.runtime import messages as m
from securefl.runtime._rounds import (
    Patience,
    RoundJournal,
    RoundSummary,
    ServerStage,
    announce_round,
    finish_messages,
    median_metrics,
    server_envelope,
)
from securefl.runtime.global_model import GlobalModel
from securefl.runtime.keys import PreRoundKeys
from securefl.strategy.base import Strategy
from securefl.wire import Envelope

__all__ = ["RoundSummary", "ServerDriver", "ServerStage"]

log = logging.getLogger(__name__)


class ServerDriver:
    """Runs rounds until ``max_rounds`` or until the monitored metric stalls.

    ``expected_sites``: start the first round as soon as all of them said
    hello; otherwise a round starts on the deadline with at least
    ``min_sites`` present. ``mode`` may be ``None`` only with ``keys`` and
    ``build_mode``: the mode is then built from ``keys.signed_public_context``
    once the step is ready, and until then no round opens.

    ``admit`` (a deployment's signed roster): the only names whose messages
    the driver takes. A name outside it never joins, so it can neither sit in
    a cohort (where a mask round could not open or complete without it) nor
    be waited for. The transport authenticates who sent what; this check
    keeps the driver safe over any transport, and ``None`` admits every name
    (a simulation, where the driver builds its sites itself).
    """

    def __init__(
        self,
        *,
        federation: str,
        mode: AggregationMode | None,
        strategy: Strategy,
        model: GlobalModel,
        spec: ParamSpec,
        rounds: RoundConfig,
        max_weight: float,
        expected_sites: tuple[str, ...] = (),
        monitor: str = "val_accuracy",
        keys: PreRoundKeys | None = None,
        build_mode: Callable[[bytes], AggregationMode] | None = None,
        admit: Collection[str] | None = None,
        run_id: str | None = None,
    ) -> None:
        if mode is None and (keys is None or build_mode is None):
            raise ConfigError("a driver without a mode needs the key step and build_mode")
        self.federation = federation
        #: names this run across restarts (a state folder keeps it); fresh otherwise
        self.run_id = run_id if run_id is not None else secrets.token_hex(16)
        self.mode = mode
        self.keys = keys
        self._build_mode = build_mode
        self.strategy = strategy
        self.model = model
        self.spec = spec
        self.rounds = rounds
        self.max_weight = max_weight
        self.expected_sites = expected_sites
        self.admit = frozenset(admit) if admit is not None else None
        if self.admit is not None and not set(expected_sites) <= self.admit:
            raise ConfigError("every expected site must be admitted by the roster")
        self.monitor = monitor
        self.stage = ServerStage.WAITING_FOR_SITES
        self.present: list[str] = []
        self.history: list[RoundSummary] = []
        self.finish_reason = ""
        #: why the run ended before its plan (no round could open); "" otherwise
        self.halted = ""
        self._round = 0
        self._aggregator: ServerAggregator | None = None
        self._cohort: tuple[str, ...] = ()
        self._announced: dict[str, Any] = {}
        self._reports: dict[str, m.Report] = {}
        self._submitted: set[str] = set()
        self._patience = Patience()
        self._next_round_due = False
        self._opened_any = False  # whether this object opened a round (not: resumed a run)
        #: where round ids and closed rounds are made durable (a state folder); None: nowhere
        self.journal: RoundJournal | None = None

    @property
    def current_round(self) -> int:
        return self._round

    @property
    def completed_rounds(self) -> int:
        """Rounds whose aggregate reached the model."""
        return sum(1 for h in self.history if h.status == "aggregated")

    @property
    def aggregator_stage(self) -> str:
        return self._aggregator.stage if self._aggregator else self.stage.value

    # -- inputs ---------------------------------------------------------------

    def handle(self, env: Envelope) -> list[Envelope]:
        """Handle one envelope from a site."""
        if env.federation != self.federation:
            raise ProtocolError(f"message for federation {env.federation!r}")
        if self.admit is not None and env.sender not in self.admit:
            raise ProtocolError(
                f"{env.sender!r} is not on the roster; its {env.stage!r} is refused"
            )
        owed = True  # a (re)joining site is sent what it lacks (it may have restarted)
        if env.stage == m.HELLO:
            owed = self.model.rejoin(env.sender, env.payload)
        if self.stage is ServerStage.FINISHED:
            # a hello is answered at once here: only when a copy is owed, so that a
            # repeated hello cannot make the server encode the final model each time
            return finish_messages(self, [env.sender]) if env.stage == m.HELLO and owed else []
        if env.stage in (m.HELLO, m.BYE) or (self.keys and env.stage in self.keys.stages):
            return self._on_anytime(env)
        if self.stage is not ServerStage.ROUND_OPEN or env.round != self._round:
            if env.round > self._round:
                raise ProtocolError(f"{env.stage!r} from {env.sender!r} outside its round")
            # a late or retried message of a round that ended (or that a restart
            # abandoned): harmless, and the site is not at fault
            log.info("dropping %s from %s: round %d is over", env.stage, env.sender, env.round)
            return []
        if env.sender not in self._cohort:
            raise ProtocolError(f"{env.sender!r} is not in round {self._round}'s cohort")
        # a site sends nothing in a round before its privacy is charged and recorded
        self._submitted.add(env.sender)
        self.model.acknowledge(env.sender)  # it answers this round: it holds its round start
        if env.stage == m.REPORT:
            self._reports[env.sender] = m.decode(env.payload, m.Report)
            return []
        assert self._aggregator is not None
        return self._guard(lambda agg: agg.handle(env), peer=env.sender)

    def on_deadline(self) -> list[Envelope]:
        """The current stage took too long: start with who is here, or drop who is not."""
        if self.stage is ServerStage.WAITING_FOR_SITES:
            if self.mode is None:
                return []  # no round can open before the keys: keep waiting for the keymaker
            if len(self.present) >= self.rounds.min_sites:
                return self._open_round()
            if self._opened_any:  # sites left this run (after a restart: wait for them)
                return self.halt(
                    f"only {len(self.present)} site(s) remain; rounds need {self.rounds.min_sites}"
                )
            return []
        if self.stage is ServerStage.ROUND_OPEN:
            return self._guard(lambda agg: agg.on_deadline())
        return []

    def stop(self, reason: str) -> list[Envelope]:
        """End the federation now (an operator's decision, or no site is left)."""
        if self.stage is not ServerStage.FINISHED:
            self.stage = ServerStage.FINISHED
            self.finish_reason = reason
            self._aggregator = None
        return finish_messages(self, self.present)

    def halt(self, reason: str) -> list[Envelope]:
        """End the run because no further round can open (too few sites, a refused cohort).

        Unlike :meth:`stop`, this is a failure: ``halted`` keeps the reason so
        that a caller can say so and exit non-zero instead of retrying.
        """
        if self.stage is not ServerStage.FINISHED:
            log.error("the federation cannot continue: %s", reason)
            self.halted = reason
        return self.stop(reason)

    def site_unreachable(self, site: str) -> list[Envelope]:
        """A message to ``site`` could not be delivered: treat it as gone."""
        return self._on_bye(site)

    def start(self) -> list[Envelope]:
        """Open the first round if enough sites are already present."""
        if self.stage is ServerStage.WAITING_FOR_SITES and self._all_expected_present():
            return self._open_round()
        return []

    # -- transitions ------------------------------------------------------------

    def _on_anytime(self, env: Envelope) -> list[Envelope]:
        if env.stage == m.HELLO:
            return self._on_hello(env.sender)
        if env.stage == m.BYE:
            return self._on_bye(env.sender)
        return self._on_keys(env)

    def _on_hello(self, site: str) -> list[Envelope]:
        if site not in self.present:
            self.present.append(site)
            log.info("site %s joined", site)
        out = self.keys.on_hello(site) if self.keys is not None else []
        if self.stage is ServerStage.WAITING_FOR_SITES and self._all_expected_present():
            return out + self._open_round()
        return out

    def _on_keys(self, env: Envelope) -> list[Envelope]:
        """The pre-round key step; once it is ready, build the mode and open round 1 if due."""
        assert self.keys is not None
        out = self.keys.handle(env)
        if self.mode is None and self.keys.ready:
            assert self._build_mode is not None
            try:
                self.mode = self._build_mode(self.keys.signed_public_context)
            except SecureFLError as exc:  # signed by the keymaker, yet unusable: cannot go on
                return out + self.halt(f"the keys from {env.sender} cannot be used: {exc}")
            log.info("the %s keys arrived from %s", self.mode.name, env.sender)
            if self.journal is not None:
                self.journal.keys(env)
            if self.stage is ServerStage.WAITING_FOR_SITES and self._all_expected_present():
                return out + self._open_round()
        return out

    def _on_bye(self, site: str) -> list[Envelope]:
        if site in self.present:
            self.present.remove(site)
            log.info("site %s left", site)
        if self.stage is ServerStage.ROUND_OPEN and site in self._cohort:
            return self._guard(lambda agg: agg.on_departure(site))
        return []

    def _roster_complete(self) -> bool:
        """Every expected site is here (so waiting cannot bring a larger cohort)."""
        return bool(self.expected_sites) and set(self.expected_sites) <= set(self.present)

    def _all_expected_present(self) -> bool:
        if self.expected_sites:
            return set(self.expected_sites) <= set(self.present)
        return len(self.present) >= self.rounds.min_sites

    def _open_round(self) -> list[Envelope]:
        if self.mode is None or len(self.present) < self.rounds.min_sites:
            self.stage = ServerStage.WAITING_FOR_SITES
            return []
        cohort = tuple(sorted(self.present))
        ctx = RoundContext(
            federation=self.federation,
            round=self._round + 1,
            cohort=cohort,
            dimension=self.spec.size,
            max_weight=self.max_weight,
            min_sites=self.rounds.min_sites,
            run=self.run_id,  # the sites sign it in mask's consistency round
        )
        announced, starts = announce_round(
            self.strategy.round_config(ctx.round),
            self.model,
            cohort=cohort,
            spec=self.spec,
            max_weight=self.max_weight,
            min_sites=self.rounds.min_sites,
            run=self.run_id,
        )
        payloads = {start for _, start in starts}
        if self.mode.name == "mask" and len(payloads) == 1:  # the digest every site signs
            ctx = dataclasses.replace(ctx, round_digest=hashlib.sha256(payloads.pop()).digest())
        try:
            aggregator = self.mode.server(ctx)
        except ConfigError as exc:
            if not self._opened_any and not self._roster_complete():
                # before this server's first round (at start or after a restart)
                # more sites may still join: wait for them
                log.warning("round %d cannot open yet: %s", ctx.round, exc)
                self.stage = ServerStage.WAITING_FOR_SITES
                return []
            # the same sites would be refused again: retrying can only spin
            return self.halt(f"round {ctx.round} cannot open: {exc}")
        if self.journal is not None:
            try:  # the round id is durable before any site may act under it
                self.journal.opening(ctx.round, cohort, announced)
            except (OSError, SecureFLError) as exc:
                log.error("round %d does not open: its id cannot be saved (%s)", ctx.round, exc)
                self.stage = ServerStage.WAITING_FOR_SITES
                return []
        self._round, self._cohort, self._reports = ctx.round, cohort, {}
        self._submitted, self._announced = set(), announced
        self._aggregator, self._opened_any = aggregator, True
        self.stage = ServerStage.ROUND_OPEN
        out = [self._envelope(m.ROUND_START, site, start) for site, start in starts]
        return out + self._aggregator.start()

    def _guard(self, step: object, peer: str | None = None) -> list[Envelope]:
        """Run an aggregator step; close the round when it completes or aborts.

        A step handling ``peer``'s message that fails with anything but our
        own errors (a native library refusing odd bytes) drops that peer from
        the round, logged with the reason: one site must never stop the server.
        """
        assert self._aggregator is not None and callable(step)
        try:
            out: list[Envelope] = step(self._aggregator)
            result = self._aggregator.result
        except AbortError as exc:
            return self._close_round(status="abandoned", reason=str(exc))
        except SecureFLError:
            raise
        except Exception as exc:
            if peer is None:
                raise
            why = f"{type(exc).__name__}: {exc}"
            log.warning(
                "dropping %s from round %d: its message failed (%s)", peer, self._round, why
            )
            return self._guard(lambda agg: agg.on_departure(peer))
        if result is None:
            return out
        try:
            self.model.apply(result, self.strategy, self._round)
        except SecureFLError as exc:
            return out + self._close_round(status="abandoned", reason=str(exc))
        return out + self._close_round(
            status="aggregated", survivors=result.survivors, weight=result.total_weight
        )

    def _close_round(
        self, *, status: str, survivors: tuple[str, ...] = (), weight: float = 0.0, reason: str = ""
    ) -> list[Envelope]:
        metrics = median_metrics(self._reports, survivors)
        self.history.append(
            RoundSummary(
                round=self._round,
                cohort=self._cohort,
                status=status,
                survivors=survivors,
                submitted=tuple(sorted(self._submitted | set(survivors))),
                total_weight=weight,
                metrics=metrics,
                reason=reason,
                **self._announced,
            )
        )
        if status == "abandoned":
            log.warning("round %d abandoned: %s", self._round, reason)
        end = m.RoundEnd(status=status, survivors=survivors, reason=reason).to_bytes()
        out = [self._envelope(m.ROUND_END, s, end) for s in self._cohort if s in self.present]
        self._aggregator = None
        stop = self._patience.stop_reason(
            metrics, monitor=self.monitor, rounds=self.rounds, round_number=self._round
        )
        if stop:
            self.stage, self.finish_reason = ServerStage.FINISHED, stop
            out += finish_messages(self, self.present)
        else:
            self.stage, self._next_round_due = ServerStage.WAITING_FOR_SITES, True
        if self.journal is not None:  # after the model moved and the next step is decided
            self.journal.closed(self.history[-1])
        return out

    def resume(
        self, *, last_round: int, history: list[RoundSummary], patience: Patience, finished: str
    ) -> None:
        """Continue a run from its journal; ``finished``: why it had ended ("": it had not)."""
        if self.stage is not ServerStage.WAITING_FOR_SITES or self._round or self.history:
            raise ProtocolError("only a driver that has not run a round can resume a run")
        self._round, self.history, self._patience = last_round, list(history), patience
        if finished:
            self.stage, self.finish_reason = ServerStage.FINISHED, finished

    @property
    def patience(self) -> Patience:
        """The stopping rule's state (a state folder keeps it across restarts)."""
        return self._patience

    def advance(self) -> list[Envelope]:
        """The previous step's envelopes were delivered: open the next round if one is due.

        Opening waits for this call so that sites found unreachable while the
        last round closed are not put into the next cohort (their peers would
        spend privacy on a round that cannot complete).
        """
        if self.stage is ServerStage.WAITING_FOR_SITES and self._next_round_due:
            self._next_round_due = False
            return self._open_round()
        return []

    def _envelope(self, stage: str, receiver: str, payload: bytes) -> Envelope:
        return server_envelope(self.federation, self._round, stage, receiver, payload)
