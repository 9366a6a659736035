"""Masking configuration and the per-round plan derived from it (threshold, graph, ring).

Why a plan: the cohort size n is only known when a round opens, and the
threshold, the neighbour graph and the ring size all depend on it. Each party
derives the plan from its *own* configuration and the cohort it sees; a site
never takes a threshold from the server, and aborts a round run under a lower
one (the server cannot collect enough shares or signatures from it).

Why 2t > n + c: a cheating server can show one survivor list to some honest
sites and another list to the others (a split view). Holders shown "v
survived" release v's self-mask share, holders shown "v dropped" release its
masking-key share, and colluding sites sign both lists and hand over both of
their shares. With A and B the two honest sides and C the colluders, the
server gets both secrets of v only if |A| + |C| >= t and |B| + |C| >= t, so
2|C| >= 2t - (|A| + |B| + |C|) >= 2t - n, i.e. |C| >= 2t - n. The cohort
therefore tolerates 2t - n - 1 colluding sites together with a cheating
server (:func:`colluders_tolerated`) and n - t dropouts
(:func:`dropouts_tolerated`); beyond 2t - n - 1 colluders a split view can
reveal individual updates.

Why c comes from the roster: the server, not the site, picks the cohort. If
c were derived from the cohort, a server could open a smaller cohort whose
threshold tolerates fewer colluders than the federation was promised (7
sites: c = 2, but a cohort of 6 would give c = 1), or a cohort of one victim
plus the colluders. So c is counted over the N sites of the roster, and a
cohort of fewer than c + 2 sites is refused (every sum keeps two honest sites).

Thresholds:

* complete graph (n <= ``complete_graph_max``): the smallest t with
  2t > n + c, where c = ``corrupt`` if set, else the default policy
  c = floor((N - 1) / 3) of the roster's N sites; never below ``min_cohort``
  (a round needs that many survivors anyway, so the higher threshold costs no
  dropout tolerance: at n = 3, t = 3). An explicit ``threshold`` must meet the
  same bound. :meth:`MaskConfig.federation_tolerance` is what holds over
  every cohort size the server may choose.
* k-regular SecAgg+ graph (Bell et al., CCS 2020) for larger n: each site
  shares with its k neighbours plus itself, threshold t of k + 1. ``k`` and
  ``t`` are the smallest even k (and, for it, the smallest t) meeting the
  bounds below by a union bound over sites, with ``g = corrupt_rate``,
  ``d = dropout_rate`` and m = :func:`max_missing` = floor(d * n), the most
  sites that may be missing from a round (a site aborts when more are):

  - privacy, <= 2**-40 in total:
    n * P[Bin(k, g) >= 2t - k - 1]  (enough colluding holders of one site
    for the split view above) +
    n**2 * P[Bin(k, g) >= max(k - m, 2t - k - 2)]  (the server splits the
    ring into two arcs, each a partial sum, by removing two runs of k/2
    consecutive sites: at most m of them may be dropouts, the rest must be
    colluders, and a site next to a run keeps only k/2 + 1 live holders, so
    the runs need 2(t - k/2 - 1) colluders for every arc site to be unmasked);
  - correctness, <= 2**-20: n * P[Bin(k + 1, d) > k + 1 - t]  (a site keeps
    fewer than t live holders).

  If no k < n - 1 meets them, the complete graph is used.

  These are probabilities over a *random* placement of colluders in the
  order, which is a hash of (federation, round id, cohort), all chosen by
  the server: it can search for an order that suits the colluders it knows.
  What holds for any order is :attr:`MaskPlan.colluders_tolerated`: with one
  survivor list for the cohort (each site needs n - m signatures over its
  list, :attr:`MaskPlan.quorum`; two lists need n - 2m common signers),
  reading one update needs t colluding holders and cutting the k-connected
  ring needs max(k - m, 2t - k - 2) colluders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from securefl.errors import ConfigError, OverflowRefusedError
from securefl.hazmat.quantize import QuantizationParams
from securefl.secagg._plan import (
    CORRECTNESS_BOUND,
    PRIVACY_BOUND,
    MaskPlan,
    colluders_tolerated,
    dropouts_tolerated,
    max_missing,
    public_order,
    regular_parameters,
)

__all__ = [
    "CORRECTNESS_BOUND",
    "PRIVACY_BOUND",
    "MaskConfig",
    "MaskPlan",
    "colluders_tolerated",
    "dropouts_tolerated",
    "max_missing",
    "regular_parameters",
]

_MAX_RING_BITS = 32  # at most 4 bytes per parameter on the wire
_MIN_RING_BITS = 16


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True, kw_only=True)
class MaskConfig:
    """How a federation masks its updates; validated on construction.

    ``clip`` is the L-infinity bound applied to each site's update before
    quantization (post-processing of the DP output, so it costs no privacy).
    ``bits`` fixes the ring Z_2^bits (16..32); ``None`` picks the smallest ring
    holding a sum of n values at ``precision_bits`` of resolution. A ring
    that could wrap is refused with :class:`OverflowRefusedError`.
    ``corrupt`` is the number of colluding sites the complete-graph threshold
    must withstand together with a cheating server; ``None`` means the default
    policy, floor((N - 1) / 3) of the N sites on the roster (never of the
    cohort, which the server picks). ``dropout_rate`` is the
    largest fraction of a k-regular cohort that may be missing from a round
    (more aborts it) and the dropout probability the graph is sized for.
    ``neighbourhood`` (k-regular graph only) sends each site only what its
    k neighbours need: their adverts and its part of each list, and proves
    the cohort's n - m consistency signatures with one BLS aggregate
    (about 2k + 1 Ed25519 and one pairing check per site instead of about
    2n + k Ed25519 checks). It keeps the cohort-wide round's colluder count
    (``threat_models/mask.md``) but needs each site's BLS key on the roster
    (:func:`securefl.secagg.bls_entry`), so it is off unless asked for.
    """

    clip: float
    bits: int | None = None
    precision_bits: int = 16
    threshold: int | None = None
    corrupt: int | None = None
    min_cohort: int = 3
    complete_graph_max: int = 64
    dropout_rate: float = 0.1
    corrupt_rate: float = 0.05
    neighbourhood: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.clip, bool) or not isinstance(self.clip, int | float):
            raise ConfigError("clip must be a number")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ConfigError("clip must be finite and positive")
        if self.bits is not None and (
            not _is_int(self.bits) or not _MIN_RING_BITS <= self.bits <= _MAX_RING_BITS
        ):
            raise ConfigError(f"bits must be an int in {_MIN_RING_BITS}..{_MAX_RING_BITS}")
        if not _is_int(self.precision_bits) or not 1 <= self.precision_bits <= 30:
            raise ConfigError("precision_bits must be an int in 1..30")
        if self.threshold is not None and (not _is_int(self.threshold) or self.threshold < 2):
            raise ConfigError("threshold must be an int >= 2")
        if self.corrupt is not None and (not _is_int(self.corrupt) or self.corrupt < 0):
            raise ConfigError("corrupt must be a non-negative int, or unset for the default policy")
        if not _is_int(self.min_cohort) or self.min_cohort < 3:
            raise ConfigError("min_cohort must be an int >= 3: fewer would isolate an update")
        if not _is_int(self.complete_graph_max) or self.complete_graph_max < self.min_cohort:
            raise ConfigError("complete_graph_max must be an int >= min_cohort")
        if not isinstance(self.neighbourhood, bool):
            raise ConfigError("neighbourhood must be true or false")
        for name in ("dropout_rate", "corrupt_rate"):
            rate = getattr(self, name)
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 0.5:
                raise ConfigError(f"{name} must be in [0, 0.5)")
        # Refuse an overflow-prone ring now, at the smallest cohort it could serve.
        self.quantization(self.min_cohort)

    def quantization(self, n: int) -> QuantizationParams:
        """Ring and scale for a sum of ``n`` sites' values (refuses overflow)."""
        if self.bits is None:
            q = QuantizationParams.for_sum(
                clip=float(self.clip),
                max_summands=n,
                target_bits_of_precision=self.precision_bits,
            )
            if q.bits > _MAX_RING_BITS:
                raise OverflowRefusedError(
                    f"a sum of {n} values at {self.precision_bits} bits of precision needs "
                    f"Z_2^{q.bits}, more than {_MAX_RING_BITS} bits; lower precision_bits"
                )
            return q
        return QuantizationParams(
            clip=float(self.clip),
            bits=self.bits,
            max_summands=n,
            precision_bits=self.precision_bits,
        )

    def plan(
        self,
        *,
        federation: str,
        round_id: int,
        cohort: tuple[str, ...],
        federation_size: int | None = None,
    ) -> MaskPlan:
        """The round's threshold, neighbour graph and ring; identical on every party.

        ``federation_size`` is N, the number of sites on the roster (the
        whole federation; default: the cohort). The colluders the complete
        graph withstands are taken from N, not from the cohort, because the
        server picks the cohort: a smaller one must not lower the tolerance.
        """
        n = len(cohort)
        big_n = n if federation_size is None else federation_size
        if not _is_int(big_n) or big_n < n:
            raise ConfigError(f"federation_size {big_n!r} is smaller than the cohort of {n}")
        if n < self.min_cohort:
            raise ConfigError(f"cohort of {n} is below min_cohort={self.min_cohort}")
        if list(cohort) != sorted(set(cohort)):
            raise ConfigError("cohort must be sorted and without duplicates")
        self._check_cohort_size(n, big_n)  # on every graph: the server picks the cohort
        quant = self.quantization(n)
        if n <= self.complete_graph_max:
            return MaskPlan(
                cohort=cohort,
                k=n - 1,
                threshold=self._complete_threshold(n, big_n),
                quant=quant,
                order=cohort,
            )
        kt = regular_parameters(n, self.corrupt_rate, self.dropout_rate)
        if kt is None:
            return MaskPlan(
                cohort=cohort,
                k=n - 1,
                threshold=self._complete_threshold(n, big_n),
                quant=quant,
                order=cohort,
            )
        order = public_order(federation, round_id, cohort)
        return MaskPlan(
            cohort=cohort,
            k=kt[0],
            threshold=kt[1],
            quant=quant,
            order=order,
            max_missing=max_missing(n, self.dropout_rate),
            local=self.neighbourhood,
        )

    def assumed_colluders(self, federation_size: int) -> int:
        """Colluding sites the complete-graph threshold withstands in a federation of N sites.

        ``corrupt`` if set, else floor((N - 1) / 3): a count over the whole
        roster, so it holds in every cohort the server may open.
        """
        return self.corrupt if self.corrupt is not None else (federation_size - 1) // 3

    def smallest_cohort(self, federation_size: int) -> int:
        """The smallest cohort a site of an N-site federation accepts: max(min_cohort, c + 2).

        With c colluders in a cohort of c + 1 sites the sum is the one honest
        site's update; c + 2 leaves at least two honest sites in every sum.
        """
        return max(self.min_cohort, self.assumed_colluders(federation_size) + 2)

    def _check_cohort_size(self, n: int, federation_size: int) -> None:
        """Refuse a cohort below :meth:`smallest_cohort`, whichever graph it would run."""
        smallest = self.smallest_cohort(federation_size)
        if n < smallest:
            c = self.assumed_colluders(federation_size)
            raise ConfigError(
                f"a cohort of {n} of the federation's {federation_size} sites is refused: with "
                f"corrupt = {c} colluders assumed a cohort needs at least {smallest} sites "
                f"(c + 2, so no sum is one honest site's update); open a larger cohort"
            )

    def _complete_threshold(self, n: int, federation_size: int) -> int:
        self._check_cohort_size(n, federation_size)
        c = self.assumed_colluders(federation_size)
        least = max((n + c) // 2 + 1, self.min_cohort)
        t = least if self.threshold is None else max(self.threshold, self.min_cohort)
        if not 2 * t > n + c:
            raise ConfigError(
                f"threshold {t} too low for a cohort of {n}: need 2t > n + corrupt = {n + c}; "
                f"unset threshold for the default ({least})"
            )
        if t > n:
            raise ConfigError(
                f"threshold {t} exceeds the cohort of {n}; lower corrupt or threshold"
            )
        return t

    def federation_tolerance(self, federation_size: int) -> int:
        """Colluders withstood in *every* cohort a server may open in a federation of N sites.

        The least, over the cohort sizes n = 3..N a site accepts, of the
        plan's :attr:`MaskPlan.colluders_tolerated` and of n - 2 (so at least
        two honest sites remain in the sum). Raises :class:`ConfigError`
        when no cohort can open. Above complete_graph_max it sizes the graph
        for every n (about 5 ms each: seconds at N = 1,000); ``securefl plan``
        calls it once.
        """
        least: int | None = None
        for n in range(self.smallest_cohort(federation_size), federation_size + 1):
            kt = None
            if n > self.complete_graph_max:
                kt = regular_parameters(n, self.corrupt_rate, self.dropout_rate)
            if kt is None:
                try:
                    t = self._complete_threshold(n, federation_size)
                except ConfigError:
                    continue  # a cohort of this size is refused by every site
                here = min(colluders_tolerated(n, t), n - 2)
            else:  # as MaskPlan.colluders_tolerated (either round), without building the plan
                k, t = kt
                m = min(max_missing(n, self.dropout_rate), n - 1)
                here = max(min(n - 2 * m, t, max(k - m, 2 * t - k - 2)) - 1, 0)
            least = here if least is None else min(least, here)
        if least is None:
            raise ConfigError(
                f"no cohort of a {federation_size}-site federation can open: each needs at "
                f"least {self.smallest_cohort(federation_size)} sites and t <= n"
            )
        return least
