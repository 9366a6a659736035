"""Exact Poisson and Skellam sampling from an AES-256-CTR keystream, no floating point.

.. warning::

   This is hazmat: easy-to-misuse primitives. The noise is exact on the
   integers and protects only a value already on the integer grid (see
   :mod:`securefl.dp.distributed` for rounding, share sizing and ring
   sizing); adding it to a float brings back the attacks exact sampling
   exists to prevent (Mironov 2012). Read ``docs/distributed_dp.md`` first.

Why Skellam: Sk(μ) = P1 - P2 with P1, P2 ~ Poisson(μ/2) independent has
variance μ, and a sum of independent Skellams is exactly a Skellam
(Poissons add), so the sum of the sites' shares carries exactly the noise the
analysis assumes (Agarwal, Kairouz, Liu, NeurIPS 2021).

How a Poisson(λ) is drawn exactly, for a rational λ (``Fraction``):

* r(k) = p(k)/p(m) with m = floor(λ) the mode is *rational*:
  λ^(k-m)·m!/k!, and r(k) <= 1 for every k. Normalising constants (e^-λ)
  cancel in rejection sampling, so only r is needed.
* A table over the window [m - W, m + W], W = 7·sqrt(λ) + 16, holds integer
  weights w_k >= 2^40·r(k) (upper bounds from 128-bit fixed point with
  directed rounding). A proposal picks k with probability w_k / total by one
  exact uniform integer (:meth:`KeystreamRng.below`) and a binary search,
  and accepts with probability a_k = 2^40·r(k)/w_k (in (0, 1], almost 1).
* The acceptance compares a 64-bit word V with two precomputed integers
  that bracket 2^64·a_k: below the lower one it accepts, at or above the
  upper one it rejects; between them (probability about 2^-63) it falls back
  to an exact comparison that reads more keystream words and recomputes
  r(k) at growing precision until the answer is certain. So the acceptance
  is exact, and the common path is a few NumPy operations per value.
* Outside the window, geometric proposals with the rational ratios
  ρ = λ/(m + W + 1) (right) and ρ' = (m - W)/λ (left) dominate r (each
  step out multiplies r by less than ρ or ρ'); they carry weight about
  e^-24 of the total and are handled exactly, one value at a time.
* Large means are split: Poisson(λ) is the sum of s draws of Poisson(λ/s)
  with λ/s <= :data:`TABLE_MAX_MEAN`, so the table stays below ~2·10^5
  entries (built once per λ, about a second at the largest) and the cost
  grows as s.

The output law is exactly Poisson(λ): no truncation, no float in any
decision. All randomness is AES-256-CTR keystream (:class:`KeystreamRng`,
key from ``os.urandom``; a fixed key is for known-answer tests only). The
running time depends on the noise drawn, not on any value it protects.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from securefl.errors import ConfigError
from securefl.hazmat.dgauss import KeystreamRng

__all__ = [
    "MAX_MEAN",
    "MAX_MEAN_DENOMINATOR",
    "TABLE_MAX_MEAN",
    "poisson",
    "skellam",
]

#: Largest λ one table serves; larger means are split into pieces (see module doc).
TABLE_MAX_MEAN = 1 << 28
#: Largest mean accepted at all (int64 outputs keep a wide margin).
MAX_MEAN = 1 << 52
#: Means are rationals with a denominator at most this (keeps the table's integers small).
MAX_MEAN_DENOMINATOR = 1 << 32

_F = 128  # fixed-point bits of the r(k) bounds in the table
_B = 40  # weight bits: w_k >= 2^B r(k); table total < 2^62
_SHIFT = _F - _B - 64  # 2^64·a_k = (2^F·r(k)) / (w_k·2^_SHIFT)
_U64 = np.uint64
_MAX_U64 = (1 << 64) - 1


def _check_mean(mean: object, what: str = "mean") -> Fraction:
    if isinstance(mean, bool) or not isinstance(mean, int | Fraction):
        raise ConfigError(f"the {what} must be an int or a fractions.Fraction, got {mean!r}")
    lam = Fraction(mean)
    if lam <= 0 or lam > MAX_MEAN:
        raise ConfigError(f"the {what} must be in (0, 2^52], got {lam}")
    if lam.denominator > MAX_MEAN_DENOMINATOR:
        raise ConfigError(f"the {what}'s denominator must be at most 2^32, got {lam.denominator}")
    return lam


def _r_bounds(lam: Fraction, m: int, k: int, prec: int) -> tuple[int, int]:
    """(lo, hi) with lo <= 2^prec·r(k) <= hi, by directed rounding from r(m) = 1."""
    a, b = lam.numerator, lam.denominator
    lo = hi = 1 << prec
    if k > m:
        for j in range(m + 1, k + 1):
            lo, hi = lo * a // (b * j), -(-hi * a // (b * j))
    else:
        for j in range(m - 1, k - 1, -1):
            lo, hi = lo * b * (j + 1) // a, -(-hi * b * (j + 1) // a)
    return lo, hi


@dataclass(frozen=True)
class _Table:
    lam: Fraction
    mode: int
    lo: int  # first k in the table
    cum: npt.NDArray[np.uint64]  # inclusive cumulative weights
    thr_lo: npt.NDArray[np.uint64]  # V < thr_lo: accept
    thr_hi: npt.NDArray[np.uint64]  # V > thr_hi: reject (thr_hi = ceil(2^64 a) - 1)
    weights: tuple[int, ...]
    right: tuple[Fraction, int]  # (ρ, T_r): T_r (1 - ρ) >= w_hi ρ
    left: tuple[Fraction, int] | None  # (ρ', T_l), None when the table starts at 0

    @property
    def hi(self) -> int:
        return self.lo + len(self.weights) - 1

    @property
    def table_total(self) -> int:
        return int(self.cum[-1])

    @property
    def total(self) -> int:
        return self.table_total + self.right[1] + (self.left[1] if self.left else 0)


def _window(mode: int) -> int:
    """Half-width W of the table around the mode: 7·sqrt(λ) + 16 (tails ~e^-24 of the mass)."""
    return 7 * math.isqrt(mode + 1) + 16


@functools.lru_cache(maxsize=8)
def _build(lam: Fraction) -> _Table:
    a, b = lam.numerator, lam.denominator
    m = a // b
    width = _window(m)
    lo_k, hi_k = max(0, m - width), m + width
    size = hi_k - lo_k + 1
    lows, highs = [0] * size, [0] * size
    one = 1 << _F
    lows[m - lo_k] = highs[m - lo_k] = one
    lo, hi = one, one
    for k in range(m + 1, hi_k + 1):
        lo, hi = lo * a // (b * k), -(-hi * a // (b * k))
        lows[k - lo_k], highs[k - lo_k] = lo, hi
    lo, hi = one, one
    for k in range(m - 1, lo_k - 1, -1):
        lo, hi = lo * b * (k + 1) // a, -(-hi * b * (k + 1) // a)
        lows[k - lo_k], highs[k - lo_k] = lo, hi
    weights = [max(1, -(-h >> (_F - _B))) for h in highs]
    # 2^64·a_k = 2^64·2^B·r(k)/w_k, and r(k) is bracketed by lows/highs over 2^F.
    thr_lo = [min(lw // (w << _SHIFT), _MAX_U64) for lw, w in zip(lows, weights, strict=True)]
    thr_hi = [-(-h // (w << _SHIFT)) - 1 for h, w in zip(highs, weights, strict=True)]
    rho = lam / (hi_k + 1)
    right = (rho, math.ceil(weights[-1] * rho / (1 - rho)))
    left = None
    if lo_k > 0:
        rho_l = Fraction(lo_k) / lam
        left = (rho_l, math.ceil(weights[0] * rho_l / (1 - rho_l)))
    return _Table(
        lam=lam,
        mode=m,
        lo=lo_k,
        cum=np.cumsum(np.array(weights, dtype=_U64), dtype=_U64),
        thr_lo=np.array(thr_lo, dtype=_U64),
        thr_hi=np.array(thr_hi, dtype=_U64),
        weights=tuple(weights),
        right=right,
        left=left,
    )


def _below(rng: KeystreamRng, bound: int) -> int:
    """One uniform integer in [0, bound) for any Python int bound >= 1 (rejection)."""
    nwords = max(1, -(-bound.bit_length() // 64))
    span = 1 << (64 * nwords)
    limit = span - span % bound
    while True:
        x = int.from_bytes(rng.words(nwords).astype("<u8").tobytes(), "little")
        if x < limit:
            return x % bound


def _coin(rng: KeystreamRng, p: Fraction) -> bool:
    return _below(rng, p.denominator) < p.numerator


def _lazy_accept(
    rng: KeystreamRng, word: int, bounds: Callable[[int], tuple[Fraction, Fraction]]
) -> bool:
    """Whether U < a, where U's first 64 bits are ``word`` and ``bounds(prec)`` brackets a.

    U is refined 64 bits at a time and a recomputed at growing precision
    until the interval of U lies on one side of a's bracket: exact, and it
    ends with probability 1 because the bracket shrinks to the point a.
    """
    v, bits, prec = word, 64, 192
    while True:
        lo, hi = bounds(prec)
        if Fraction(v + 1, 1 << bits) <= lo:
            return True
        if Fraction(v, 1 << bits) >= hi:
            return False
        v = (v << 64) | int(rng.words(1)[0])
        bits += 64
        prec += 64


def _slow(rng: KeystreamRng, t: _Table, u: int, word: int) -> int | None:
    """Finish one proposal exactly: an undecided table entry or a tail. None = rejected."""
    lam, m = t.lam, t.mode
    if u < t.table_total:
        k = t.lo + int(np.searchsorted(t.cum, _U64(u), side="right"))
        w = t.weights[k - t.lo]

        def table_bounds(prec: int) -> tuple[Fraction, Fraction]:
            lo, hi = _r_bounds(lam, m, k, prec)
            scale = Fraction(1 << _B, w << prec)
            return lo * scale, hi * scale

        return k if _lazy_accept(rng, word, table_bounds) else None
    if u < t.table_total + t.right[1]:
        rho, mass, edge, step = t.right[0], t.right[1], t.hi, 1
    else:
        assert t.left is not None
        rho, mass, edge, step = t.left[0], t.left[1], t.lo, -1
    j = 1
    while _coin(rng, rho):
        j += 1
    k = edge + step * j
    if k < 0:
        return None
    density = mass * (1 - rho) * rho ** (j - 1)  # the proposal's weight at k

    def tail_bounds(prec: int) -> tuple[Fraction, Fraction]:
        lo, hi = _r_bounds(lam, m, k, prec)
        scale = Fraction(1 << _B, 1 << prec) / density
        return lo * scale, hi * scale

    return k if _lazy_accept(rng, word, tail_bounds) else None


def _poisson_piece(rng: KeystreamRng, count: int, t: _Table) -> npt.NDArray[np.int64]:
    out = np.empty(count, dtype=np.int64)
    pending = np.arange(count)
    total = np.full(1, t.total, dtype=_U64)
    table_total = _U64(t.table_total)
    while pending.size:
        n = pending.size
        u = rng.below(np.broadcast_to(total, (n,)))
        v = rng.words(n)
        in_table = u < table_total
        idx = np.searchsorted(t.cum, np.where(in_table, u, _U64(0)), side="right")
        accept = in_table & (v < t.thr_lo[idx])
        reject = in_table & (v > t.thr_hi[idx])
        out[pending[accept]] = t.lo + idx[accept].astype(np.int64)
        keep = np.ones(n, dtype=bool)
        keep[accept] = False
        for i in np.flatnonzero(~(accept | reject)):  # about 2^-63 of entries, and the tails
            got = _slow(rng, t, int(u[i]), int(v[i]))
            if got is not None:
                out[pending[i]] = got
                keep[i] = False
        pending = pending[keep]
    return out


def poisson(rng: KeystreamRng, count: int, mean: int | Fraction) -> npt.NDArray[np.int64]:
    """``count`` independent Poisson(``mean``) integers, exactly (see the module doc)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"count must be an integer >= 0, got {count!r}")
    if not isinstance(rng, KeystreamRng):
        raise ConfigError("rng must be a securefl.hazmat.dgauss.KeystreamRng")
    lam = _check_mean(mean)
    pieces = -(-lam // TABLE_MAX_MEAN)
    table = _build(lam / pieces)
    out = _poisson_piece(rng, count, table)
    for _ in range(int(pieces) - 1):
        out += _poisson_piece(rng, count, table)
    return out


def skellam(rng: KeystreamRng, count: int, variance: int | Fraction) -> npt.NDArray[np.int64]:
    """``count`` independent Sk(``variance``) integers: Poisson(μ/2) - Poisson(μ/2), exactly.

    ``variance`` μ is the Skellam's variance (its two Poisson means are μ/2);
    an int or a Fraction with denominator at most 2^31.
    """
    mu = _check_mean(variance, "variance")
    if mu.denominator > MAX_MEAN_DENOMINATOR // 2:
        raise ConfigError(f"the variance's denominator must be at most 2^31, got {mu.denominator}")
    both = poisson(rng, 2 * count, mu / 2)
    return both[:count] - both[count:]
