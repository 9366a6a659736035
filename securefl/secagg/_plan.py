"""One round's public plan (threshold, neighbour graph, ring) and the graph's sizing.

Kept apart from :class:`~securefl.secagg._config.MaskConfig` because both
halves of the protocol consult the plan at every stage, while the config is
only read when a round opens. The bounds and the reasoning behind them are
in :mod:`securefl.secagg._config`'s docstring and ``docs/mask.md``.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

from securefl.hazmat.quantize import QuantizationParams

__all__ = [
    "CORRECTNESS_BOUND",
    "PRIVACY_BOUND",
    "MaskPlan",
    "colluders_tolerated",
    "dropouts_tolerated",
    "max_missing",
    "public_order",
    "regular_parameters",
]

PRIVACY_BOUND = 2.0**-40
CORRECTNESS_BOUND = 2.0**-20


def colluders_tolerated(n: int, t: int) -> int:
    """Colluding sites a cohort of n with threshold t withstands with a cheating server.

    2t - n - 1: with that many or fewer, no split view of the survivor list
    gives the server both secrets of an honest site; with more, it can.
    For a k-regular graph pass n = k + 1 (a site and its k neighbours).
    """
    return max(2 * t - n - 1, 0)


def dropouts_tolerated(n: int, t: int) -> int:
    """Sites that may drop out of a complete-graph cohort of n with threshold t: n - t."""
    return max(n - t, 0)


def max_missing(n: int, dropout_rate: float) -> int:
    """Most sites that may be missing from a k-regular round: floor(dropout_rate * n).

    The graph is sized for this many dropouts (Bell et al. assume at most a
    fraction of the cohort drops); a server claiming more could choose them
    to cut the ring into arcs whose partial sums it learns, so a site aborts.
    """
    return math.floor(dropout_rate * n)


def _binom_tail_ge(k: int, p: float, m: int) -> float:
    """P[Bin(k, p) >= m]."""
    if m <= 0:
        return 1.0
    return math.fsum(math.comb(k, i) * p**i * (1 - p) ** (k - i) for i in range(m, k + 1))


@functools.lru_cache(maxsize=1024)
def regular_parameters(n: int, corrupt_rate: float, dropout_rate: float) -> tuple[int, int] | None:
    """Smallest even degree k and threshold t meeting the bounds.

    The bounds and why they suffice are in :mod:`securefl.secagg._config`.
    """
    g, d, m = corrupt_rate, dropout_rate, max_missing(n, dropout_rate)
    for k in range(4, n - 1, 2):
        for t in range(k // 2 + 1, k + 2):
            split_view = n * _binom_tail_ge(k, g, 2 * t - k - 1)
            ring_split = n * n * _binom_tail_ge(k, g, max(k - m, 2 * t - k - 2))
            if split_view <= PRIVACY_BOUND / 2 and ring_split <= PRIVACY_BOUND / 2:
                if n * _binom_tail_ge(k + 1, d, k + 2 - t) <= CORRECTNESS_BOUND:
                    return k, t
                break  # a larger t only hurts correctness
    return None


def public_order(federation: str, round_id: int, cohort: tuple[str, ...]) -> tuple[str, ...]:
    """A public pseudo-random ring order: nobody picks whom a site is placed next to."""
    seed = hashlib.sha256(
        b"securefl/mask/graph/v1\x00" + repr((federation, round_id, cohort)).encode()
    ).digest()
    return tuple(sorted(cohort, key=lambda s: hashlib.sha256(seed + s.encode()).digest()))


@dataclass(frozen=True, kw_only=True)
class MaskPlan:
    """One round's public parameters; ``k == n - 1`` means the complete graph.

    ``max_missing`` caps how many cohort sites may be missing at any stage;
    ``None`` (the complete graph) means n - threshold, which the threshold
    already enforces.
    """

    cohort: tuple[str, ...]
    k: int
    threshold: int
    quant: QuantizationParams
    order: tuple[str, ...]
    max_missing: int | None = None
    local: bool = False
    """The neighbourhood round (``MaskConfig.neighbourhood``): each site gets and checks
    only its holders' adverts and lists; the cohort's consistency signatures come as
    one BLS aggregate, so the counts below are the cohort-wide round's."""

    @property
    def complete(self) -> bool:
        return self.k == len(self.cohort) - 1

    @property
    def missing_allowed(self) -> int:
        """Most cohort sites that may be absent from any stage's list of this round."""
        n = len(self.cohort)
        if self.max_missing is None:
            return dropouts_tolerated(n, self.threshold)
        return min(self.max_missing, n - 1)

    @property
    def local_missing(self) -> int:
        """ℓ: most of one site's k neighbours that may be missing from its lists or signers.

        min(m, k + 1 - t): never more than the cohort-wide cap, and never so
        many that fewer than t holders remain. Only the neighbourhood round
        uses it; the cohort-wide round counts over the whole cohort instead.
        """
        return min(self.missing_allowed, self.k + 1 - self.threshold)

    def shown_to(self, site: str, ids: Iterable[str]) -> list[str]:
        """The part of a cohort-wide list that ``site`` is sent: all of it, or its holders'."""
        if not self.local:
            return sorted(ids)
        return sorted(self.holders(site) & set(ids))

    @property
    def quorum(self) -> int:
        """Consistency signatures over one survivor list a site needs: n - missing_allowed.

        Signatures come from the whole cohort, not only a site's holders: two
        lists that each gather n - m signatures share n - 2m signers, and an
        honest site signs one list per round, so two honest sites release
        shares under different lists only if n - 2m sites collude. On the
        complete graph this is t (m = n - t).
        """
        return len(self.cohort) - self.missing_allowed

    @property
    def colluders_tolerated(self) -> int:
        """Colluding sites anywhere in the cohort withstood by a cheating server, for any placement.

        Complete graph: min(2t - n - 1, n - 2): the split view needs 2t - n
        colluders, and n - 1 colluders read the one honest site's update from
        the sum itself (at t = n, 2t - n - 1 = n - 1). k-regular graph: one
        fewer than the least of n - 2m (to split the survivor list, see
        :attr:`quorum`), t (a site's t colluding holders give its masking
        key) and max(k - m, 2t - k - 2) (cutting the ring: the graph is
        k-connected, so a cut removes k sites of which at most m are
        missing, and the two arc sites next to the cut need t - k/2 - 1
        colluding holders each to have their self masks rebuilt). It holds
        whatever order the server makes the sites fall in; the 2**-40 bound
        of :func:`regular_parameters` is a separate claim about a random
        corrupt_rate fraction placed independently of the order.
        """
        n, t, k, m = len(self.cohort), self.threshold, self.k, self.missing_allowed
        if self.complete:
            return min(colluders_tolerated(n, t), n - 2)
        return max(min(n - 2 * m, t, max(k - m, 2 * t - k - 2)) - 1, 0)

    @functools.cached_property
    def _position(self) -> dict[str, int]:
        """Each site's place in the ring order (looked up for every neighbour set)."""
        return {s: i for i, s in enumerate(self.order)}

    def share_id(self, site: str) -> int:
        """The Shamir x-coordinate of ``site``: its 1-based position in the cohort."""
        return self.cohort.index(site) + 1

    def neighbours(self, site: str) -> frozenset[str]:
        """Sites ``site`` masks with (Harary graph H(n, k) over the public order)."""
        if self.complete:
            return frozenset(s for s in self.cohort if s != site)
        n, pos = len(self.order), self._position[site]
        half = self.k // 2
        return frozenset(self.order[(pos + d) % n] for d in range(-half, half + 1) if d != 0)

    def holders(self, site: str) -> frozenset[str]:
        """Sites holding shares of ``site``'s secrets: its neighbours and itself."""
        return self.neighbours(site) | {site}
