"""A site's protocol, as a sans-IO state machine that mirrors the server's driver.

It takes the server's envelopes and returns the envelopes to send, and says
when something is due of the caller: a round start to check (and, once the
caller accepted it, training), the end of a round, the end of the
federation. It holds no socket, no clock and no model: the caller (the
:class:`~securefl.runtime.site.Site` loop) owns the transport, the ledger and
the user's training loop. That is why a transport error is not the end of a
site: the caller reconnects and calls :meth:`SiteDriver.resume`, which leaves
the round in progress (whose privacy stays charged; the server goes on
without this site, as with any dropout) and says hello again, and the site
takes part from the next round start.

Stale messages: a mode's stage message reaches the aggregator only when it
names the round this site is in (and has submitted in); one of any other
round (ended, left, never joined: what an HTTPS outbox re-delivers to a
restarted site) is dropped unread, since answering it needs keys this site
does not hold. Only stage messages take that path: identity and federation
are checked first, and a round start, round end, finish or key message is
never dropped as stale, so the drop path can neither skip a round start the
site must check (and may refuse) nor let a message past a check.

::

    NEW --hello()--> WAITING --round start, accept()--> TRAINING --submitted()--> IN_ROUND
                        ^                                                          |
                        +--------------- round end / resume() / new round start ---+
    any --finish--> FINISHED;  leave() --> LEFT
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from securefl.aggregation.base import AggregationMode, SiteAggregator
from securefl.errors import ProtocolError
from securefl.runtime import messages as m
from securefl.runtime.global_model import ModelDecoder, decode_plain_model
from securefl.runtime.keys import PreRoundSiteKeys
from securefl.wire import SERVER, Envelope

if TYPE_CHECKING:
    from securefl.modes import SiteHalf

__all__ = ["SiteDriver", "SiteEvent", "SiteStage"]

log = logging.getLogger("securefl.runtime.site")


class SiteStage(enum.Enum):
    NEW = "new"
    WAITING = "waiting for a round"
    TRAINING = "training"
    IN_ROUND = "in a round"
    FINISHED = "finished"
    LEFT = "left"


@dataclass(frozen=True)
class SiteEvent:
    """What the caller must act on: ``kind`` is ``"round_start"``, ``"round_end"``, ``"finish"``.

    ``envelope`` is the server's message; for a round start the caller checks
    it (:func:`securefl.runtime._site_round.check_round_start`), reserves the
    round's privacy and calls :meth:`SiteDriver.accept`, or refuses it.
    """

    kind: str
    envelope: Envelope


class SiteDriver:
    """One site's side of the federation protocol, without I/O.

    ``keys`` is the mode's pre-round key step (``he``); the mode's half is
    then built from the key messages and read from :attr:`mode` and
    :attr:`decode_model`.
    """

    def __init__(
        self,
        *,
        name: str,
        federation: str,
        mode: AggregationMode | None = None,
        keys: PreRoundSiteKeys | None = None,
        decode_model: ModelDecoder = decode_plain_model,
    ) -> None:
        self.name = name
        self.federation = federation
        self.mode = mode
        self.keys = keys
        self.decode_model = decode_model
        self.stage = SiteStage.NEW
        #: the round this site is in (accepted, training or answering its stages)
        self.round: int | None = None
        #: rounds this site left before they ended: their stragglers are dropped unread
        self.left_rounds: set[int] = set()
        self._aggregator: SiteAggregator | None = None

    # -- joining ----------------------------------------------------------------

    def hello(self) -> list[Envelope]:
        """Join (or join again): hello, then what the key step sends (the keymaker's keys)."""
        if self.stage in (SiteStage.FINISHED, SiteStage.LEFT):
            raise ProtocolError(f"{self.name} has {self.stage.value}; it says hello no more")
        held = getattr(self.decode_model, "hello", None)  # what of a history it holds (he)
        out = [self._envelope(m.HELLO, held() if callable(held) else b"", 0)]
        if self.keys is not None:
            sent, half = self.keys.hello()
            out += sent
            if half is not None:
                self._take(half)
        self.stage = SiteStage.WAITING
        return out

    def resume(self) -> list[Envelope]:
        """After a transport error: leave the round in progress and say hello again.

        The round's privacy stays charged (the caller's ledger fails closed);
        its remaining messages are dropped when they arrive.
        """
        self._leave_round()
        return self.hello()

    def leave(self, reason: str) -> list[Envelope]:
        """Tell the server this site stops taking part."""
        self._leave_round()
        self.stage = SiteStage.LEFT
        return [self._envelope(m.BYE, reason[:1000].encode(), 0)]  # within the gate's limit

    # -- the server's messages --------------------------------------------------

    def handle(self, env: Envelope) -> tuple[list[Envelope], SiteEvent | None]:
        """One envelope from the server: the replies to send and what is due, if anything."""
        if env.sender != SERVER or env.receiver != self.name:
            raise ProtocolError(f"{self.name}: a message from {env.sender!r} is not the server's")
        if env.federation != self.federation:
            raise ProtocolError(f"message for another federation: {env.federation!r}")
        if self.keys is not None and env.stage in self.keys.stages:
            self._take(self.keys.handle(env))
            return [], None
        if env.stage == m.FINISH:
            self._leave_round()
            self.stage = SiteStage.FINISHED
            return [], SiteEvent("finish", env)
        if env.stage == m.ROUND_END:
            return [], self._on_round_end(env)
        if env.stage == m.ROUND_START:
            return [], self._on_round_start(env)
        if env.round == self.round:  # the one round this site holds an aggregator for
            if self.stage is not SiteStage.IN_ROUND or self._aggregator is None:
                raise ProtocolError(f"{self.name}: {env.stage!r} of round {env.round} "
                                    "before this site submitted")  # fmt: skip
            return self._aggregator.handle(env), None
        # a round that ended, that this site left, or that it never joined (a restarted
        # site is handed what the server queued for the process that died): this site
        # holds no key or state of it, so it has nothing to answer with. Dropped unread.
        why = "left" if env.round in self.left_rounds else "is not in"
        log.debug("%s: dropped %s of round %d, which it %s", self.name, env.stage, env.round, why)
        return [], None

    def _on_round_end(self, env: Envelope) -> SiteEvent | None:
        if self.stage is SiteStage.IN_ROUND and env.round == self.round:
            self.stage, self.round, self._aggregator = SiteStage.WAITING, None, None
            return SiteEvent("round_end", env)
        return None  # the end of a round this site sat out or left

    def _on_round_start(self, env: Envelope) -> SiteEvent:
        if self.stage is SiteStage.TRAINING:
            raise ProtocolError(f"round start {env.round} before round {self.round} was submitted")
        if self.stage is SiteStage.IN_ROUND:
            if self.round is not None and env.round <= self.round:
                raise ProtocolError(f"{env.stage!r} before round {self.round} ended")
            # the server went on (it restarted, or closed our round unseen): leave ours
            log.warning("%s: round %s left for round %d", self.name, self.round, env.round)
            self._leave_round()
        if self.stage is not SiteStage.WAITING:
            raise ProtocolError(f"{self.name} is {self.stage.value}: no round can start")
        return SiteEvent("round_start", env)

    # -- the caller's decisions -------------------------------------------------

    def accept(self, round_number: int, aggregator: SiteAggregator) -> None:
        """The round start passed every check and its privacy is reserved: train."""
        if self.stage is not SiteStage.WAITING:
            raise ProtocolError(f"{self.name} is {self.stage.value}: cannot accept a round")
        self.stage, self.round, self._aggregator = SiteStage.TRAINING, round_number, aggregator

    def submitted(self, report: bytes, protected: list[Envelope]) -> list[Envelope]:
        """The update is charged and protected: the report, then the mode's messages."""
        if self.stage is not SiteStage.TRAINING or self.round is None:
            raise ProtocolError(f"{self.name} is {self.stage.value}: nothing to submit")
        self.stage = SiteStage.IN_ROUND
        # the report goes first: the update may complete the round on arrival
        return [self._envelope(m.REPORT, report, self.round), *protected]

    def abandon(self) -> None:
        """The round was refused or stopped after it was accepted; wait for the next one."""
        self._leave_round()

    # -- plumbing ---------------------------------------------------------------

    def _leave_round(self) -> None:
        if self.round is not None:
            self.left_rounds.add(self.round)
        self.round, self._aggregator = None, None
        if self.stage in (SiteStage.TRAINING, SiteStage.IN_ROUND):
            self.stage = SiteStage.WAITING

    def _take(self, half: SiteHalf) -> None:
        self.mode, self.decode_model = half.mode, half.decoder

    def _envelope(self, stage: str, payload: bytes, round_number: int) -> Envelope:
        return Envelope(
            federation=self.federation,
            round=round_number,
            stage=stage,
            sender=self.name,
            receiver=SERVER,
            payload=payload,
        )
