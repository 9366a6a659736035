"""The Gaussian mechanism on a grid, with exact integer noise from a CSPRNG.

DP-SGD releases S + N(0, (σC)² I) where S is the sum of clipped gradients
(L2 sensitivity C). Sampling N in floating point leaks S through the set of
representable outputs (Mironov 2012; Jin et al., IEEE S&P 2022, who broke
Opacus's sampler this way). :class:`SecureGaussianNoise` releases instead

    γ · (round(S / γ) + Z),    Z ~ N_Z(0, V) i.i.d., exact, from AES-256-CTR,

with γ a power of two (so every step is exact in float64; the final cast to
the model's dtype is post-processing). Why the accountant's Gaussian
guarantee at noise multiplier σ still holds, with the numbers here:

1. Rounding to the grid: for neighbouring datasets,
   ‖round(S/γ) − round(S'/γ)‖₂ <= C/γ + sqrt(d) =: Δ (each coordinate moves
   by at most 1 more than S/γ does).
2. Write V = σ_c² + r² with r = :data:`SMOOTHING_SIGMA`. For an integer
   shift μ, N_Z(μ, V) is within a pointwise factor (1 ± 2^-250) of
   T(N(μ, σ_c²)), where T(y) = y + N_Z over the coset Z − y with variance r²
   commutes with integer shifts (Peikert, CRYPTO 2010, Thm 3.1 with Λ1 = R,
   Λ2 = Z; the rounding of Genise, Micciancio, Peikert, Walter, PKC 2020).
   So the release is, up to that factor, a post-processing of the
   continuous Gaussian mechanism with noise multiplier σ_c / Δ.
3. :func:`plan_noise` picks V with σ_c >= σ·Δ, so σ_c/Δ >= σ: every
   accountant's ε for σ is valid, up to the factor of step 2 and the
   samplers' own (1 ± 2^-250) and e^-450 terms (``securefl.hazmat.dgauss``):
   together less than 2^-180 on ε and 2^-500 on δ for any run with fewer
   than 2^40 coordinate-steps.

The price is a little more noise than σC: the standard deviation is about
σ(C + γ·sqrt(d)), and the grid is chosen so that γ·sqrt(d) <= C/500 where
the sampler's range allows (:attr:`NoisePlan.inflation` says by how much).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from securefl.errors import ConfigError
from securefl.hazmat.dgauss import (
    MAX_VARIANCE,
    KeystreamRng,
    VariancePlan,
    gaussian_integers,
    plan_variance,
)

__all__ = ["SMOOTHING_SIGMA", "NoisePlan", "SecureGaussianNoise", "plan_noise"]

#: r in step 2 of the module doc: r·sqrt(2π) >= η_ε(Z) for ε < 2^-250.
SMOOTHING_SIGMA = 3.0
#: The grid aims at γ·sqrt(d) <= C / _RESOLUTION.
_RESOLUTION = 1000.0
#: ... and at least this many grid steps per C for tiny models.
_MIN_STEPS_PER_CLIP = float(1 << 16)
#: Outputs |round(S/γ) + Z| must stay exact in float64.
_MAX_GRID_VALUE = float(1 << 52)


@dataclass(frozen=True)
class NoisePlan:
    """The grid and the integer noise for one (σ, C, d)."""

    granularity: float
    sensitivity: float
    variance: VariancePlan
    noise_multiplier: float
    max_grad_norm: float
    dims: int

    @property
    def effective_noise_multiplier(self) -> float:
        """σ_c / Δ of the module doc: the σ the mechanism really provides (>= σ)."""
        sigma_c = math.sqrt(self.variance.variance - SMOOTHING_SIGMA**2)
        return sigma_c / self.sensitivity

    @property
    def inflation(self) -> float:
        """Noise standard deviation over σC (>= 1): the utility price of the grid."""
        std = self.granularity * math.sqrt(self.variance.variance)
        return std / (self.noise_multiplier * self.max_grad_norm)


def _finite_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number > 0, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def plan_noise(*, noise_multiplier: float, max_grad_norm: float, dims: int) -> NoisePlan:
    """Choose γ (a power of two) and V so the release is at least σ-Gaussian (module doc).

    Raises:
        ConfigError: σ or C not finite and > 0, or ``dims`` < 1.
    """
    sigma = _finite_positive("noise_multiplier", noise_multiplier)
    clip = _finite_positive("max_grad_norm", max_grad_norm)
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise ConfigError(f"dims must be an integer >= 1, got {dims!r}")
    root_d = math.sqrt(dims)
    # Grid steps per C: fine enough that sqrt(d) is negligible next to it,
    # coarse enough that σ·(steps + sqrt(d)) stays within the sampler.
    wanted = max(_RESOLUTION * root_d, _MIN_STEPS_PER_CLIP)
    reachable = math.sqrt(MAX_VARIANCE - SMOOTHING_SIGMA**2) / (sigma * 1.001) - root_d
    steps = min(wanted, reachable)
    if steps < 1:
        raise ConfigError(
            f"noise_multiplier {sigma:g} is too large for the secure sampler at d={dims}"
        )
    granularity = 2.0 ** math.ceil(math.log2(clip / steps))  # so C/γ <= steps
    sensitivity = clip / granularity + root_d
    # Exact integers: V >= (σΔ)² + r², with a relative margin for float error.
    needed = (sigma * sensitivity) ** 2 * (1 + 1e-12) + SMOOTHING_SIGMA**2
    variance = plan_variance(math.ceil(needed))
    return NoisePlan(
        granularity=granularity,
        sensitivity=sensitivity,
        variance=variance,
        noise_multiplier=sigma,
        max_grad_norm=clip,
        dims=dims,
    )


class SecureGaussianNoise:
    """Releases γ(round(S/γ) + Z) for a clipped-gradient sum S of ``dims`` values.

    Noise comes from a :class:`~securefl.hazmat.dgauss.KeystreamRng` under a
    fresh ``os.urandom`` key; nothing here reads numpy's or torch's
    generators. :meth:`_from_parts` injects a key for known-answer tests.
    """

    def __init__(self, *, noise_multiplier: float, max_grad_norm: float, dims: int) -> None:
        self.plan = plan_noise(
            noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm, dims=dims
        )
        self._rng = KeystreamRng()

    @classmethod
    def _from_parts(
        cls, *, noise_multiplier: float, max_grad_norm: float, dims: int, key: bytes
    ) -> SecureGaussianNoise:
        self = cls(noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm, dims=dims)
        self._rng = KeystreamRng(key)
        return self

    def __getstate__(self) -> object:
        raise TypeError("SecureGaussianNoise holds a secret key and cannot be pickled")

    def noise_integers(self, count: int) -> npt.NDArray[np.int64]:
        """The next ``count`` integer noise values Z (in grid steps)."""
        return gaussian_integers(self._rng, count, self.plan.variance)

    def privatize(self, summed: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """γ(round(S/γ) + Z) for the flat clipped sum ``summed`` (float64 result).

        The noise is drawn before the gradient is read, so its sampling time
        does not depend on the gradient.

        Raises:
            ConfigError: wrong length, or a value that is not finite or too
                large for an exact float64 grid.
        """
        flat = np.asarray(summed, dtype=np.float64).reshape(-1)
        if flat.size != self.plan.dims:
            raise ConfigError(f"expected {self.plan.dims} gradient values, got {flat.size}")
        noise = self.noise_integers(flat.size)
        gamma = self.plan.granularity
        if not np.all(np.isfinite(flat)):
            raise ConfigError("the clipped gradient sum has non-finite values; refusing to release")
        grid = np.rint(flat / gamma)  # exact: γ is a power of two
        if grid.size and float(np.max(np.abs(grid))) + float(np.max(np.abs(noise))) >= (
            _MAX_GRID_VALUE
        ):
            raise ConfigError("the clipped gradient sum is too large for the noise grid")
        return (grid.astype(np.int64) + noise).astype(np.float64) * gamma
