"""The driver's bookkeeping around a round: its summary, when to stop, what to send.

Apart from :mod:`securefl.runtime.server` so that the state machine there
holds only transitions: here are the pure pieces it calls on a transition,
none of which touches the aggregator or decides who is in a round. The
summary is what the server may know after a round (and what its signed
round log records); the patience rule decides from the survivors' mean
metrics whether the run ends; round starts and finish messages are encoded
once per distinct model payload, since in he mode each site may be sent a
different part of the history. ``securefl.runtime.server`` re-exports
:class:`RoundSummary`.
"""

from __future__ import annotations

import enum
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from securefl.config import RoundConfig
from securefl.params import ParamSpec, params_hash
from securefl.runtime import messages as m
from securefl.runtime.global_model import GlobalModel
from securefl.wire import SERVER, Envelope

if TYPE_CHECKING:
    from securefl.runtime.server import ServerDriver

__all__ = [
    "Patience",
    "RoundJournal",
    "RoundSummary",
    "ServerStage",
    "announce_round",
    "encode_per_model",
    "finish_messages",
    "median_metrics",
    "server_envelope",
]


class ServerStage(enum.Enum):
    """Where the round driver is (:class:`securefl.runtime.server.ServerDriver`)."""

    WAITING_FOR_SITES = "waiting for sites"
    ROUND_OPEN = "round open"
    FINISHED = "finished"


@dataclass(kw_only=True)
class RoundSummary:
    """What the server may know about one round after it ends."""

    round: int
    cohort: tuple[str, ...]
    status: str
    survivors: tuple[str, ...] = ()
    #: every cohort member the server heard from in the round (its report or its
    #: update): each has been charged and must have a signed record of the round
    submitted: tuple[str, ...] = ()
    total_weight: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    #: what the round announced, for the server's signed round log
    #: (:mod:`securefl.reports.server_log`): params_hash of the model sent
    #: (None when the server holds no plaintext, as in he mode) and the settings
    model_hash: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    max_weight: float = 0.0
    min_sites: int = 0


def median_metrics(reports: Mapping[str, m.Report], survivors: tuple[str, ...]) -> dict[str, float]:
    """The median over the survivors of each metric they all reported.

    Why the median: reports are the sites' own word (checked finite, not
    plausible), and the patience rule stops everyone's training on them. With
    a mean, one site reporting 1e300 once holds the best value out of reach
    and ends the run early; the median stays within the range of the honest
    reports while fewer than half of the survivors lie.
    """
    kept = [r for s, r in reports.items() if s in survivors]
    if not kept:
        return {}
    keys = set.intersection(*(set(r.metrics) for r in kept))
    return {k: statistics.median(r.metrics[k] for r in kept) for k in keys}


@dataclass
class Patience:
    """The best value of the monitored metric so far, and the rounds since it improved."""

    best: float | None = None
    stale: int = 0

    def stop_reason(
        self, metrics: dict[str, float], *, monitor: str, rounds: RoundConfig, round_number: int
    ) -> str:
        """Why the run ends after round ``round_number`` closed with ``metrics``; "" if not."""
        if monitor in metrics and rounds.patience is not None:
            value = metrics[monitor]
            if self.best is None or value > self.best:
                self.best, self.stale = value, 0
            else:
                self.stale += 1
            if self.stale >= rounds.patience:
                return f"no improvement in {monitor} for {self.stale} rounds"
        if round_number >= rounds.max_rounds:
            return f"reached max_rounds={rounds.max_rounds}"
        return ""


def encode_per_model(
    sites: Iterable[str], model: GlobalModel, encode: Callable[[bytes], bytes]
) -> list[tuple[str, bytes]]:
    """Each site with ``encode`` of the model payload it is due, encoded once per payload."""
    encoded: dict[bytes, bytes] = {}
    out = []
    for site in sites:
        payload = model.payload_for(site)
        if payload not in encoded:
            encoded[payload] = encode(payload)
        out.append((site, encoded[payload]))
    return out


def announce_round(
    config: dict[str, Any],
    model: GlobalModel,
    *,
    cohort: tuple[str, ...],
    spec: ParamSpec,
    max_weight: float,
    min_sites: int,
    run: str,
) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """What a round announces (for its summary) and each cohort member's round start."""
    plain = model.plaintext()
    announced = {
        "model_hash": None if plain is None else params_hash(plain),
        "config": dict(config),
        "max_weight": max_weight,
        "min_sites": min_sites,
    }
    starts = encode_per_model(
        cohort,
        model,
        lambda payload: m.RoundStart(
            cohort=cohort,
            model=payload,
            spec=spec.to_dict(),
            max_weight=max_weight,
            min_sites=min_sites,
            config=config,
            run=run,
        ).to_bytes(),
    )
    return announced, starts


class RoundJournal(Protocol):
    """Where the driver makes a round durable (a server state folder); sans-IO for the driver.

    The driver calls these at its transitions and never touches a file itself.
    """

    def opening(self, round_id: int, cohort: tuple[str, ...], announced: dict[str, Any]) -> None:
        """Round ``round_id`` is about to open with ``announced``: make its id durable first.

        Raising (``OSError``, e.g. a full disk) keeps the round closed; the
        driver logs why and tries again at the next deadline.
        """

    def closed(self, summary: RoundSummary) -> None:
        """A round ended (its aggregate already applied to the model). Never raises."""

    def keys(self, envelope: Envelope) -> None:
        """The pre-round key step completed with ``envelope`` (he: the keymaker's keys)."""


def server_envelope(
    federation: str, round_id: int, stage: str, receiver: str, payload: bytes
) -> Envelope:
    return Envelope(
        federation=federation,
        round=round_id,
        stage=stage,
        sender=SERVER,
        receiver=receiver,
        payload=payload,
    )


def finish_messages(driver: ServerDriver, sites: list[str]) -> list[Envelope]:
    """The final model for ``sites``, each sent only what it has not acknowledged."""
    finish = encode_per_model(
        sites,
        driver.model,
        lambda model: m.Finish(
            model=model, reason=driver.finish_reason, rounds=driver.current_round
        ).to_bytes(),
    )
    return [
        server_envelope(driver.federation, driver.current_round, m.FINISH, site, payload)
        for site, payload in finish
    ]
