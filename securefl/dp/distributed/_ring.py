"""Size the ring Z_2^bits so the noisy integer sum wraps with probability below a bound.

The sum of a round, per coordinate, is V_j = Σ_i R_ij + Σ_i Z_ij: the sites'
rounded clipped sums and their Skellam shares. It decodes correctly when it
lies in the signed range [-2^(bits-1), 2^(bits-1) - 1]. Noise is unbounded,
so "never wraps" is impossible; instead (proofs in ``docs/distributed_dp.md``):

* signal: |Σ_i R_ij| <= s·C·B + n for a total batch of B examples over n
  sites (|S_j| <= ||S||_2 <= b_i·C, and rounding adds less than 1 per
  site); :func:`batch_bound` gives a B exceeded with probability <= β_B
  (Chernoff for a Poisson-sampled batch);
* noise: a sum of Skellams is Sk(μ_sum), and the Chernoff bound with its
  moment generating function exp(μ(cosh t - 1)) at t = asinh(a/μ) gives
  P[|Sk(μ)| >= a] <= 2·exp(-(a·asinh(a/μ) - μ(sqrt(1 + (a/μ)²) - 1)))
  (:func:`skellam_tail`); a union bound over the d coordinates.

A wrap costs accuracy, not privacy: the noise is in the integers before any
reduction, and reducing mod 2^bits is post-processing of the private
release. The server's integer path refuses a sum with a coordinate beyond
the plan's :attr:`RingPlan.magnitude_bound` (a wrap, or a site that sent
more than clipping allows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from securefl.errors import ConfigError, OverflowRefusedError

__all__ = [
    "RingPlan",
    "batch_bound",
    "ring_plan",
    "signal_bound",
    "skellam_tail",
    "wrap_probability",
]

_MIN_BITS, _MAX_BITS = 2, 62
_SLACK = 1.0 + 1e-9  # covers float rounding in the exponent; bounds only grow


def _num(name: str, value: object, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Fraction):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ConfigError(f"{name} must be finite and {'positive' if positive else '>= 0'}")
    return v


def _int(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{name} must be an int >= {least}, got {value!r}")
    return value


def skellam_tail(variance: float | Fraction, a: float) -> float:
    """An upper bound on P[|Sk(variance)| >= a] (Chernoff; see the module doc). 1 for a <= 0."""
    mu = _num("variance", variance)
    if a <= 0:
        return 1.0
    x = a / mu
    root_minus_one = x * x / (math.sqrt(1.0 + x * x) + 1.0)  # sqrt(1 + x²) - 1, no cancellation
    exponent = a * math.asinh(x) - mu * root_minus_one
    return min(1.0, 2.0 * math.exp(-exponent / _SLACK) * _SLACK)


def batch_bound(*, records: int, rate: float, failure: float) -> int:
    """A total batch size B with P[Bin(records, rate) > B] <= failure (Chernoff).

    P[X >= (1+δ)m] <= exp(-m·δ²/(2+δ)) for X a sum of independent
    Bernoullis with mean m; the smallest δ meeting ``failure`` is solved for
    in closed form, and B = ceil((1+δ)m), capped at ``records``.
    """
    n = _int("records", records, 1)
    q = _num("rate", rate)
    if q > 1:
        raise ConfigError("rate must be in (0, 1]")
    beta = _num("failure", failure)
    if beta >= 1:
        raise ConfigError("failure must be in (0, 1)")
    m = n * q
    ln = math.log(1.0 / beta)
    # m δ² = L (2 + δ)  =>  δ = (L + sqrt(L² + 8 m L)) / (2m)
    delta = (ln + math.sqrt(ln * ln + 8.0 * m * ln)) / (2.0 * m)
    return min(n, math.ceil((1.0 + delta) * m * _SLACK))


def signal_bound(*, clip: float, scale: float, batch: int, sites: int) -> int:
    """max_j |Σ_i R_ij| for a total batch of ``batch`` examples over ``sites`` sites."""
    c, s = _num("clip", clip), _num("scale", scale)
    return math.ceil(c * s * _int("batch", batch, 0) * _SLACK) + _int("sites", sites, 1)


def wrap_probability(
    *, bits: int, dimension: int, signal: int, noise_variance: float | Fraction
) -> float:
    """An upper bound on P[some coordinate of the noisy sum leaves the signed range].

    ``signal`` bounds |Σ R_ij| (:func:`signal_bound`), ``noise_variance`` is
    μ_sum, the Skellam variance of the whole sum (all sites that may
    contribute). Monotone: more bits or less noise never raise it.
    """
    b = _int("bits", bits, _MIN_BITS)
    d = _int("dimension", dimension, 1)
    headroom = (1 << (b - 1)) - 1 - _int("signal", signal, 0)
    # no wrap when |noise_j| <= headroom, i.e. fails only if |noise_j| >= headroom + 1
    return min(1.0, d * skellam_tail(noise_variance, float(headroom + 1)))


@dataclass(frozen=True)
class RingPlan:
    """The smallest ring meeting the bound, and the largest magnitude an honest sum reaches.

    ``magnitude_bound`` = signal + a, where P[|noise_j| > a] <= failure / d:
    the server refuses a sum with a coordinate beyond it.
    """

    bits: int
    magnitude_bound: int
    wrap_bound: float


def ring_plan(
    *,
    dimension: int,
    signal: int,
    noise_variance: float | Fraction,
    failure: float = 2.0**-40,
    max_bits: int = 32,
) -> RingPlan:
    """The smallest Z_2^bits whose wrap probability is at most ``failure``.

    Refuses (:class:`OverflowRefusedError`) when even ``max_bits`` is not
    enough: lower the scale, or the noise, or use fewer sites per round.
    """
    d = _int("dimension", dimension, 1)
    beta = _num("failure", failure)
    if beta >= 1:
        raise ConfigError("failure must be in (0, 1)")
    mu = _num("noise_variance", noise_variance)
    sig = _int("signal", signal, 0)
    top = _int("max_bits", max_bits, _MIN_BITS)
    if top > _MAX_BITS:
        raise ConfigError(f"max_bits must be at most {_MAX_BITS}")
    # Smallest a with d·tail(a) <= failure: the tail is decreasing in a, so bisect.
    lo, hi = 0, 1
    while d * skellam_tail(mu, float(hi)) > beta:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if d * skellam_tail(mu, float(mid)) > beta else (lo, mid)
    magnitude = sig + hi - 1  # |noise_j| <= hi - 1 except with probability <= failure / d
    bits = max(_MIN_BITS, (magnitude + 1).bit_length() + 1)  # 2^(bits-1) - 1 >= magnitude
    if bits > top:
        raise OverflowRefusedError(
            f"a noisy sum reaching {magnitude} needs a {bits}-bit ring, more than {top}; "
            "lower the scale or the noise, or open smaller cohorts"
        )
    return RingPlan(
        bits=bits,
        magnitude_bound=magnitude,
        wrap_bound=wrap_probability(bits=bits, dimension=d, signal=sig, noise_variance=mu),
    )
