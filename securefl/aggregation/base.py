"""The aggregator seam: one mode (plain, mask, he) in two sans-IO halves.

Why this shape: the runtime must not know how a mode hides updates, and a
strategy must never see one site's update. So each mode is a pair of state
machines that take envelopes and return envelopes; when the server half
completes it exposes only ``(Σ w·Δ, Σ w)`` and who survived. No sockets,
threads or clocks live here: the runtime feeds the machines, and tells the
server half when a stage's deadline has passed (``on_deadline``), which is
how dropouts are noticed.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from securefl.errors import AbortError, ConfigError
from securefl.wire import Envelope

__all__ = [
    "AggregateResult",
    "AggregationMode",
    "RoundContext",
    "ServerAggregator",
    "SiteAggregator",
]


@dataclass(frozen=True, kw_only=True)
class RoundContext:
    """What both halves agree on before a round starts.

    ``cohort`` is the sorted tuple of site ids selected for the round;
    ``dimension`` the length of the update vector; ``max_weight`` the largest
    weight (example count) a site may claim, enforced by every mode.

    ``round_digest`` is, on a site, the SHA-256 of the round-start payload it
    was given (model, parameter spec, cohort, max_weight, min_sites, strategy
    config). Modes that hide updates from a cheating server need it to check
    that every site was given the same round (``mask`` refuses a site context
    without it); ``b""`` means unknown, which is all the server half has.

    ``run`` is the server's run id from the round start: with the federation
    and the round it names the round for a site's round log (``""``: unknown).
    """

    federation: str
    round: int
    cohort: tuple[str, ...]
    dimension: int
    max_weight: float
    min_sites: int = 2
    round_digest: bytes = b""
    run: str = ""

    def __post_init__(self) -> None:
        if len(set(self.cohort)) != len(self.cohort):
            raise ConfigError("cohort lists a site twice")
        if self.dimension < 1:
            raise ConfigError("update dimension must be positive")
        if self.max_weight <= 0:
            raise ConfigError("max_weight must be positive")
        if self.min_sites < 1:
            raise ConfigError("min_sites must be at least 1")
        if not isinstance(self.round_digest, bytes) or len(self.round_digest) not in (0, 32):
            raise ConfigError("round_digest must be 32 bytes (a SHA-256), or empty when unknown")


@dataclass(frozen=True, kw_only=True)
class AggregateResult:
    """The only thing a completed round reveals: sums over the survivors.

    ``weighted_sum`` is Σ w·Δ (float64) for plain and mask; in ``he`` mode it
    is ``None`` and ``encrypted_sum`` holds the mode's ciphertext aggregate.
    """

    total_weight: float
    survivors: tuple[str, ...]
    weighted_sum: npt.NDArray[np.float64] | None = None
    encrypted_sum: Any = None

    def mean(self) -> npt.NDArray[np.float64]:
        """Σ w·Δ / Σ w, the weighted average update (plaintext modes only)."""
        if self.weighted_sum is None:
            raise ConfigError("this aggregate is encrypted; only sites can read it")
        if not (math.isfinite(self.total_weight) and self.total_weight > 0):
            raise AbortError(
                f"the aggregate's total weight is {self.total_weight}: no mean exists; "
                "the round is abandoned"
            )
        with np.errstate(all="ignore"):
            mean = self.weighted_sum / self.total_weight
        if mean.size and not (np.isfinite(np.min(mean)) and np.isfinite(np.max(mean))):
            raise AbortError("the aggregate's mean is not finite; the round is abandoned")
        return mean


class SiteAggregator(ABC):
    """A site's half: protects ``(Δ, w)`` and answers the server's stages."""

    @abstractmethod
    def submit(self, vector: npt.NDArray[np.float32], weight: float) -> list[Envelope]:
        """Start the protocol with this site's update; returns envelopes to send."""

    @abstractmethod
    def handle(self, envelope: Envelope) -> list[Envelope]:
        """Handle one server envelope; returns envelopes to send."""


class ServerAggregator(ABC):
    """The server's half: combines protected updates and reveals only the sum."""

    def start(self) -> list[Envelope]:
        """Envelopes to send when the round opens (most modes send none)."""
        return []

    @abstractmethod
    def handle(self, envelope: Envelope) -> list[Envelope]:
        """Handle one site envelope; returns envelopes to send."""

    @abstractmethod
    def on_deadline(self) -> list[Envelope]:
        """The current stage's deadline passed: sites not heard from are dropped."""

    def on_departure(self, site_id: str) -> list[Envelope]:
        """``site_id`` said it is leaving mid-round; treat it as dropped now.

        The default waits for the deadline instead; modes override this to
        finish a stage early when every remaining site has answered.
        """
        return []

    @property
    @abstractmethod
    def result(self) -> AggregateResult | None:
        """The aggregate once the protocol completed, else ``None``."""

    @property
    @abstractmethod
    def stage(self) -> str:
        """The name of the stage the server is waiting in (for progress and logs)."""


class AggregationMode(ABC):
    """A factory for both halves of one mode, configured once per federation."""

    name: ClassVar[str]
    #: True when the server learns nothing but the sum; ``plain`` says False loudly.
    hides_updates: ClassVar[bool]

    @abstractmethod
    def site(self, ctx: RoundContext, site_id: str) -> SiteAggregator:
        """The site half for ``site_id`` in this round."""

    @abstractmethod
    def server(self, ctx: RoundContext) -> ServerAggregator:
        """The server half for this round."""
