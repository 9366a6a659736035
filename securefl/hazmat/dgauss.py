"""Exact discrete Gaussian and Bernoulli sampling from an AES-256-CTR keystream.

.. warning::

   This is hazmat: easy-to-misuse primitives. The samplers are exact on the
   integers, but adding their output to a *floating-point* value brings back
   the attacks they exist to prevent (Mironov 2012; Jin et al. 2022): the
   value must first be rounded to the sampler's grid. The safe API is
   :class:`securefl.dp.noise.SecureGaussianNoise`, which does that and sizes
   the grid; read ``docs/privacy.md`` (secure noise) first.

Why: DP noise drawn with floating-point arithmetic (Box-Muller, the polar
method, inverse CDF in doubles) has a support and rounding pattern that
depends on the value being protected, which leaks it (Mironov 2012 for
Laplace; Jin, McMurtry, Rubinstein, Ohrimenko, IEEE S&P 2022, for Gaussian
samplers, Opacus's included). Integer noise sampled *exactly*, added to a
value already on the integer grid, has no such pattern: every integer is a
possible output for every input, with exactly the probability the analysis
assumes.

What is sampled:

* :meth:`KeystreamRng.below`: uniform integers in [0, m), by rejection from
  64-bit words (no modulo bias).
* :func:`bernoulli_exp`: Bernoulli(exp(-n/d)) for integer n >= 0, d >= 1,
  exactly (Canonne, Kamath, Steinke 2020, Algorithms 1 and 2).
* :func:`discrete_gaussian`: the discrete Gaussian N_Z(0, V) for an integer
  variance parameter V <= :data:`MAX_BASE_VARIANCE` (CKS 2020, Algorithm 3,
  a discrete Laplace proposal accepted with an exact Bernoulli), conditioned
  on |x| <= 30·(floor(sqrt V) + 1) because the proposal is cut there to keep
  every intermediate in 64 bits. The cut-off tail weighs less than e^-450.
* :func:`gaussian_integers`: N_Z(0, V') for any V' >= V up to
  :data:`MAX_VARIANCE`, as X1 + K·X2 of two base samples (the convolution
  theorem of Peikert, CRYPTO 2010, Thm 3.1; also Micciancio & Walter,
  CRYPTO 2017): with the parameters chosen here, every output probability is
  within a factor (1 ± 2^-250) of N_Z(0, V') (see ``plan_variance``).

All randomness is AES-256-CTR keystream under a key from ``os.urandom``
(:class:`KeystreamRng`); a fixed key is accepted only for known-answer tests.

Loops run until every element is done, so the running time depends on the
noise drawn (its aggregate over the whole vector, not on any value it is
added to). ``docs/privacy.md`` states what that leaves open.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from securefl.errors import ConfigError

__all__ = [
    "MAX_BASE_VARIANCE",
    "MAX_VARIANCE",
    "KeystreamRng",
    "VariancePlan",
    "bernoulli_exp",
    "bernoulli_rate",
    "discrete_gaussian",
    "gaussian_integers",
    "plan_variance",
]

KEY_LEN = 32
#: Largest V the base sampler takes: keeps (|x|·t - V)² below 2^63.
MAX_BASE_VARIANCE = 1 << 26
#: Largest K for X1 + K·X2 (X1 has variance 9K² <= MAX_BASE_VARIANCE).
_MAX_K = math.isqrt(MAX_BASE_VARIANCE // 9)
#: Largest variance :func:`gaussian_integers` reaches (σ about 2.2e7).
MAX_VARIANCE = _MAX_K * _MAX_K * MAX_BASE_VARIANCE
#: The discrete Laplace proposal's geometric part is cut here (see module doc).
_MAX_GEOMETRIC = 30

_U64 = np.uint64
_U64_MAX = np.uint64(0xFFFFFFFFFFFFFFFF)
_ONE = np.uint64(1)


class KeystreamRng:
    """64-bit words from AES-256-CTR (zero initial counter) under a one-use key.

    The key is drawn from ``os.urandom`` and never leaves the object, so no
    seed (and no global state, such as ``torch.manual_seed``) can reproduce
    the stream. ``key`` is for known-answer tests only.
    """

    def __init__(self, key: bytes | None = None) -> None:
        if key is None:
            key = os.urandom(KEY_LEN)
        if not isinstance(key, bytes) or len(key) != KEY_LEN:
            raise ConfigError(f"a keystream key is {KEY_LEN} bytes")
        self._encryptor = Cipher(algorithms.AES256(key), modes.CTR(bytes(16))).encryptor()

    def __getstate__(self) -> object:
        raise TypeError("KeystreamRng holds a secret key and cannot be pickled")

    def words(self, n: int) -> npt.NDArray[np.uint64]:
        """The next ``n`` keystream words, little-endian ``uint64``."""
        # Encrypt zeros straight into the result; update_into wants a spare block.
        out = np.empty(n + 2, dtype="<u8")
        self._encryptor.update_into(bytes(8 * n), memoryview(out.view(np.uint8)))  # type: ignore[arg-type]
        return out[:n].astype(_U64, copy=False)

    def below(self, m: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
        """One uniform integer in [0, m[i]) for each i; every m[i] >= 1.

        Rejection sampling: a word is kept when it falls below the largest
        multiple of m[i] that fits in 64 bits, so the residue is exactly
        uniform (no modulo bias).
        """
        m = np.asarray(m, dtype=_U64)
        if m.size and int(m.min()) < 1:
            raise ConfigError("below() needs every bound >= 1")
        limit = (_U64_MAX // m) * m
        w = self.words(m.size)
        bad = np.flatnonzero(w >= limit)
        while bad.size:  # rare: probability m/2^64 per draw
            fresh = self.words(bad.size)
            ok = fresh < limit[bad]
            w[bad[ok]] = fresh[ok]
            bad = bad[~ok]
        return w % m

    def coins(
        self, num: npt.NDArray[np.uint64], den: npt.NDArray[np.uint64] | int
    ) -> npt.NDArray[np.bool_]:
        """Bernoulli(num[i]/den[i]) for each i, exactly; 0 <= num <= den, den >= 1.

        Same law as ``below(den) < num`` without the second division: a word
        w below the largest multiple B·den of den is uniform on den blocks of
        B values, and w < num·B selects exactly num of them. ``den`` may be
        one int shared by all (the same words, the same coins, no division
        per element).
        """
        if isinstance(den, int):
            block = np.full(1, (2**64 - 1) // den, dtype=_U64)
            limit = block * _U64(den)
        else:
            block = _U64_MAX // den
            limit = block * den
        w = self.words(num.size)
        bad = np.flatnonzero(w >= limit)
        while bad.size:  # rare: probability den/2^64 per draw
            fresh = self.words(bad.size)
            ok = fresh < (limit if limit.size == 1 else limit[bad])
            w[bad[ok]] = fresh[ok]
            bad = bad[~ok]
        return w < num * block

    def bits(self, n: int) -> npt.NDArray[np.bool_]:
        """``n`` fair coins."""
        return (self.words(n) & _ONE).astype(bool)


def bernoulli_rate(rng: KeystreamRng, count: int, rate: float) -> npt.NDArray[np.bool_]:
    """``count`` independent coins, each true with probability q' = floor(q·2^64)/2^64.

    q' is within 2^-64 below q = ``rate`` (exactly q when q is a multiple of
    2^-64): a word is compared with an exact integer threshold, no float
    arithmetic on the random value. Poisson sampling at a rate q' <= q is at
    least as private as at q (sampling at q, then keeping each sampled record
    with probability q'/q, is itself Poisson subsampling of the batch).
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"count must be an integer >= 0, got {count!r}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        raise ConfigError(f"rate must be a number in (0, 1], got {rate!r}")
    if rate == 1:
        return np.ones(count, dtype=bool)
    threshold = math.floor(Fraction(rate) * (1 << 64))
    return rng.words(count) < _U64(threshold)


def _bernoulli_exp_le1(
    rng: KeystreamRng, num: npt.NDArray[np.uint64], den: npt.NDArray[np.uint64]
) -> npt.NDArray[np.bool_]:
    # CKS 2020, Algorithm 1: for γ = num/den in [0, 1], K <- 1; while
    # Bernoulli(γ/K): K <- K + 1; return K odd. P[K odd] = exp(-γ).
    # Every element still running is at the same K, so K is one number.
    result = np.empty(num.shape, dtype=bool)
    shared = int(den[0]) if den.size and bool(np.all(den == den[0])) else None
    active = np.arange(num.size)
    a_num, a_den = num, den
    k = 1
    while active.size:
        heads = rng.coins(a_num, shared * k if shared is not None else a_den * _U64(k))
        result[active[~heads]] = k % 2 == 1
        active, a_num = active[heads], a_num[heads]
        if shared is None:
            a_den = a_den[heads]
        k += 1
    return result


def bernoulli_exp(
    rng: KeystreamRng, num: npt.NDArray[np.uint64], den: npt.NDArray[np.uint64]
) -> npt.NDArray[np.bool_]:
    """Bernoulli(exp(-num[i]/den[i])) for each i, exactly (CKS 2020, Algorithm 2).

    exp(-γ) = exp(-1)^floor(γ) · exp(-(γ - floor γ)): floor(γ) coins of
    Bernoulli(exp(-1)), stopping at the first failure, then one for the
    fractional part. ``den`` must stay below 2^58 so den·K cannot overflow.
    """
    num = np.asarray(num, dtype=_U64)
    den = np.asarray(den, dtype=_U64)
    if den.size and (int(den.min()) < 1 or int(den.max()) >= 1 << 58):
        raise ConfigError("bernoulli_exp needs 1 <= den < 2^58")
    result = np.ones(num.shape, dtype=bool)
    whole = num // den
    frac = num % den
    active = np.flatnonzero(whole > 0)
    while active.size:
        ones = np.ones(active.size, dtype=_U64)
        coin = _bernoulli_exp_le1(rng, ones, ones)
        result[active] &= coin
        whole[active] -= _ONE
        active = active[coin & (whole[active] > 0)]
    alive = np.flatnonzero(result)
    result[alive] = _bernoulli_exp_le1(rng, frac[alive], den[alive])
    return result


def discrete_gaussian(rng: KeystreamRng, count: int, variance: int) -> npt.NDArray[np.int64]:
    """``count`` samples of N_Z(0, variance), exact up to the e^-450 tail cut.

    CKS 2020, Algorithm 3 with σ² = ``variance`` (an integer, so every
    acceptance probability is an exact rational): t = floor(σ) + 1; draw a
    discrete Laplace Y of scale t, accept with probability
    exp(-(|Y| - σ²/t)² / (2σ²)).
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"count must be an integer >= 0, got {count!r}")
    if (
        isinstance(variance, bool)
        or not isinstance(variance, int)
        or not 1 <= variance <= MAX_BASE_VARIANCE
    ):
        raise ConfigError(f"variance must be an integer in [1, {MAX_BASE_VARIANCE}]")
    t = math.isqrt(variance) + 1
    out = np.empty(count, dtype=np.int64)
    filled = 0
    while filled < count:
        m = count - filled
        u = rng.below(np.full(m, t, dtype=_U64))
        keep = bernoulli_exp(rng, u, np.full(m, t, dtype=_U64))
        # Geometric part: count Bernoulli(exp(-1)) successes before a failure.
        v = np.zeros(m, dtype=np.int64)
        going = np.flatnonzero(keep)
        while going.size:
            ones = np.ones(going.size, dtype=_U64)
            coin = _bernoulli_exp_le1(rng, ones, ones)
            v[going[coin]] += 1
            going = going[coin & (v[going] <= _MAX_GEOMETRIC)]
        keep &= v <= _MAX_GEOMETRIC
        negative = rng.bits(m)
        keep &= ~(negative & (u == 0) & (v == 0))  # +0 and -0 are one value
        magnitude = u.astype(np.int64) + t * v
        idx = np.flatnonzero(keep)
        diff = (magnitude[idx] * t - variance).astype(np.int64)
        num = (diff * diff).astype(_U64)
        den = np.full(idx.size, 2 * variance * t * t, dtype=_U64)
        accepted = idx[bernoulli_exp(rng, num, den)]
        values = np.where(negative[accepted], -magnitude[accepted], magnitude[accepted])
        out[filled : filled + values.size] = values
        filled += values.size
    return out


@dataclass(frozen=True)
class VariancePlan:
    """How :func:`gaussian_integers` reaches a variance: X1 + K·X2.

    X1 ~ N_Z(0, ``fine``), X2 ~ N_Z(0, ``coarse``); ``k = 0`` means one base
    sample of variance ``fine``. ``variance`` = fine + k²·coarse.
    """

    k: int
    fine: int
    coarse: int

    @property
    def variance(self) -> int:
        """The exact variance parameter of the output."""
        return self.fine + self.k * self.k * self.coarse


def plan_variance(at_least: int) -> VariancePlan:
    """The plan whose variance is the smallest we reach that is >= ``at_least``.

    Up to :data:`MAX_BASE_VARIANCE` one exact sample. Above, K = the smallest
    integer with K²·MAX_BASE_VARIANCE >= at_least, fine = 9K² and coarse =
    ceil((at_least - 9K²)/K²). Peikert's convolution theorem (CRYPTO 2010,
    Thm 3.1, with Λ1 = KZ and Λ2 = Z) then puts X1 + K·X2 within a pointwise
    factor (1+ε)/(1-ε) of N_Z(0, variance) as soon as the parameter
    σ3 = σ1·Kσ2/sqrt(σ1² + K²σ2²) is at least K·η_ε(Z)/sqrt(2π); with σ1 = 3K
    and σ2 >= 2^12, σ3 >= 2.99K, and η_ε(Z) <= sqrt(ln(2 + 2/ε)/π)
    (Micciancio & Regev 2004, Lemma 3.3) gives ε < 2^-250.
    """
    if isinstance(at_least, bool) or not isinstance(at_least, int) or not 1 <= at_least:
        raise ConfigError(f"variance must be an integer >= 1, got {at_least!r}")
    if at_least > MAX_VARIANCE:
        raise ConfigError(
            f"variance {at_least} is above the sampler's maximum {MAX_VARIANCE}; use a coarser grid"
        )
    if at_least <= MAX_BASE_VARIANCE:
        return VariancePlan(k=0, fine=at_least, coarse=0)
    k = math.isqrt(-(-at_least // MAX_BASE_VARIANCE))
    while k * k * MAX_BASE_VARIANCE < at_least:
        k += 1
    fine = 9 * k * k
    coarse = max(1, -(-(at_least - fine) // (k * k)))
    return VariancePlan(k=k, fine=fine, coarse=coarse)


def gaussian_integers(rng: KeystreamRng, count: int, plan: VariancePlan) -> npt.NDArray[np.int64]:
    """``count`` integers distributed as N_Z(0, plan.variance) (see :func:`plan_variance`)."""
    fine = discrete_gaussian(rng, count, plan.fine)
    if plan.k == 0:
        return fine
    return fine + plan.k * discrete_gaussian(rng, count, plan.coarse)
