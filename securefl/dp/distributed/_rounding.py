"""Scale a site's clipped gradient sum to integers by randomized rounding, and its sensitivity.

What is sent is R(s·S): S the sum of the batch's per-example gradients, each
clipped to L2 norm C, s the public scale (integers per unit), and R the
coordinate-wise unbiased randomized rounding
R(x)_j = floor(x_j) + Bernoulli(frac(x_j)), drawn from AES-256-CTR.

Sensitivity (proved in ``docs/distributed_dp.md``, section "Sensitivity"):
for datasets differing in one example, there is a coupling of the two
roundings under which every pair of outcomes satisfies

    ||R(x) - R(x')||_2 <= C·s + sqrt(d)      ||R(x) - R(x')||_1 <= C·s·sqrt(d) + d

The coupling: with a 64-bit word w per coordinate,
R(x)_j = floor(x_j) + [w_j < floor(frac(x_j)·2^64)] = floor(x_j + u_j) with
u_j = (2^64 - 1 - w_j)/2^64 uniform on a grid in [0, 1), the same for both
datasets, and floor(a + u) - floor(b + u) < a - b + 1. By the joint convexity
of exp((α-1)·D_α), the Rényi divergence of the noisy releases is at most the
largest divergence between noise centred at coupled outcomes, so these are
the sensitivities the accountant needs.

The probability of rounding up is floor(frac·2^64)/2^64, within 2^-64 below
frac (a bias below 2^-64 per coordinate; it does not enter the sensitivity).
Every float step is exact: s is a power of two, so s·S is exact in float64
(no underflow at these magnitudes); x - trunc(x) is exact, and the threshold
floor(frac(x)·2^64) is formed from it in integers (1 + a tiny negative part
is not representable in float64, so frac(x) is never formed as a float).
What the bound assumes of the caller is that S itself is a sum of vectors of
norm at most C (the docs say how the integration keeps it so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from securefl.errors import ConfigError, DataError
from securefl.hazmat.dgauss import KeystreamRng

__all__ = ["MAX_SCALED", "Sensitivity", "randomized_round", "sensitivity"]

#: Largest |s·S_j| accepted: frac(x) is exact and int64 holds the result.
MAX_SCALED = float(1 << 52)
_TWO64 = float(1 << 64)


@dataclass(frozen=True)
class Sensitivity:
    """L2 and L1 sensitivity of the rounded scaled sum, in integer units (rounded up)."""

    l2: float
    l1: float


def _power_of_two(value: object) -> float:
    s = _positive("scale", value)
    mantissa, _ = math.frexp(s)
    if mantissa != 0.5:
        raise ConfigError(f"scale must be a power of two (exact scaling), got {value!r}")
    return s


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ConfigError(f"{name} must be finite and positive, got {value!r}")
    return v


def sensitivity(*, clip: float, scale: float, dimension: int) -> Sensitivity:
    """The bounds of the module doc: L2 = C·s + sqrt(d), L1 = C·s·sqrt(d) + d.

    One example's clipped gradient has L2 norm at most C, hence L1 norm at
    most C·sqrt(d); rounding adds less than 1 per coordinate under the
    coupling. Values are rounded up to the next float so they never
    understate the exact bound.
    """
    c, s = _positive("clip", clip), _power_of_two(scale)
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise ConfigError(f"dimension must be an int >= 1, got {dimension!r}")
    root = math.nextafter(math.sqrt(dimension), math.inf)
    l2 = math.nextafter(c * s + root, math.inf)
    l1 = math.nextafter(math.nextafter(c * s * root, math.inf) + dimension, math.inf)
    return Sensitivity(l2=l2, l1=l1)


def randomized_round(
    values: npt.NDArray[np.floating], *, scale: float, rng: KeystreamRng | None = None
) -> npt.NDArray[np.int64]:
    """R(scale·values): unbiased randomized rounding to int64, coins from AES-256-CTR.

    ``scale`` must be a power of two (so scaling is exact).
    ``rng`` defaults to a fresh :class:`KeystreamRng` (key from os.urandom);
    pass one with a fixed key only in known-answer tests. Refuses NaN,
    infinities and values whose scaled magnitude exceeds :data:`MAX_SCALED`.
    """
    s = _power_of_two(scale)
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.dtype.kind != "f":
        raise DataError("randomized_round takes a 1-D floating-point array")
    x = arr.astype(np.float64) * s
    if x.size:
        lo, hi = float(np.min(x)), float(np.max(x))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise DataError("the scaled sum contains NaN or infinity")
        if max(-lo, hi) > MAX_SCALED:
            raise DataError(
                f"the scaled sum reaches {max(-lo, hi):.3g}, above 2^52; lower the scale"
            )
    rng = KeystreamRng() if rng is None else rng
    whole = np.trunc(x)
    part = x - whole  # exact: the low bits of x's own mantissa, with x's sign
    negative = part < 0
    # frac(x) = part for part >= 0, 1 + part for part < 0; 1 + part is *not* exact
    # in float64 (x = -1e-30), so the threshold floor(frac·2^64) is formed in
    # integers: 2^64 + floor(part·2^64), as uint64 arithmetic modulo 2^64.
    scaled = np.floor(part * _TWO64)  # exact and integer-valued; in (-2^64, 2^64)
    magnitude = np.abs(scaled).astype(np.uint64)  # < 2^64 since |part| < 1
    threshold = np.where(negative, np.uint64(0) - magnitude, magnitude)
    up = rng.words(x.size) < threshold
    base = whole.astype(np.int64) - negative.astype(np.int64)
    return base + up.astype(np.int64)
