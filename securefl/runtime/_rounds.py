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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from securefl.config import RoundConfig
from securefl.runtime import messages as m
from securefl.runtime.global_model import GlobalModel

__all__ = ["Patience", "RoundSummary", "encode_per_model", "mean_metrics"]


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


def mean_metrics(reports: Mapping[str, m.Report], survivors: tuple[str, ...]) -> dict[str, float]:
    """Unweighted mean over the survivors of each metric they all reported."""
    kept = [r for s, r in reports.items() if s in survivors]
    if not kept:
        return {}
    keys = set.intersection(*(set(r.metrics) for r in kept))
    return {k: sum(r.metrics[k] for r in kept) / len(kept) for k in keys}


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
