"""Fixed site inputs for comparing aggregation modes on the same federation.

DP-SGD noise comes from a CSPRNG, so two simulations never submit the same
updates. To compare what two rounds *aggregate*, the tests wrap each site's
mode so that it submits a vector fixed by (site, round) instead of the one
it trained (its weight, the number of records it holds, is kept): any two
modes must then reach the same model, up to the masking's quantization.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import numpy.typing as npt

from securefl.aggregation.base import AggregationMode, RoundContext, SiteAggregator
from securefl.wire import Envelope

#: the norm of each fixed input (below the tests' clip of 1.0)
NORM = 0.5


def fixed_input(site: str, round_number: int, size: int) -> npt.NDArray[np.float32]:
    """A test vector fixed by ``site`` and ``round_number`` (test data, not a secret)."""
    seed = int.from_bytes(hashlib.sha256(f"{site}/{round_number}".encode()).digest()[:8], "big")
    vector = np.random.default_rng(seed).standard_normal(size)
    return (vector * (NORM / np.linalg.norm(vector))).astype(np.float32)


class _FixedSite(SiteAggregator):
    def __init__(self, inner: SiteAggregator, site: str, round_number: int) -> None:
        self._inner, self._site, self._round = inner, site, round_number

    def submit(self, vector: npt.NDArray[np.float32], weight: float) -> list[Envelope]:
        return self._inner.submit(fixed_input(self._site, self._round, vector.size), weight)

    def handle(self, envelope: Envelope) -> list[Envelope]:
        return self._inner.handle(envelope)


class FixedInputs(AggregationMode):
    """``inner`` whose sites submit :func:`fixed_input` instead of their trained update."""

    hides_updates = True

    def __init__(self, inner: AggregationMode) -> None:
        self._inner = inner
        self.name = inner.name  # type: ignore[misc]

    def site(self, ctx: RoundContext, site_id: str) -> SiteAggregator:
        return _FixedSite(self._inner.site(ctx, site_id), site_id, ctx.round)

    def server(self, ctx: RoundContext) -> Any:
        return self._inner.server(ctx)
