"""Each site's share of the Skellam noise, sized for the fewest honest survivors.

With threshold t (a round unmasks only with at least t survivors; fewer
abort before unmasking) and up to c colluding sites, the colluders know, and
can subtract, their own shares. The sum is then protected only by the
shares of the honest survivors, of which there are at least t - c. So each
site adds Sk(μ/(t - c)): any t - c honest shares add up to exactly Sk(μ)
(Skellams are closed under summation), the full noise μ the accountant is
told about, and every extra honest survivor only adds noise.

If more than c sites collude, masking itself fails (``threat_models/mask.md``)
and one site's update is protected only by its own share: Sk(μ/(t - c)),
a noise multiplier sqrt(t - c) times smaller than the central one
(:attr:`NoiseShare.own_noise_fraction`). The docs quantify it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from securefl.errors import ConfigError
from securefl.hazmat.dgauss import KeystreamRng
from securefl.hazmat.skellam import skellam

__all__ = ["NoiseShare", "add_noise_share", "noise_share"]


def _count(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{name} must be an int >= {least}, got {value!r}")
    return value


@dataclass(frozen=True)
class NoiseShare:
    """One site's noise share: Sk(``variance``) per coordinate.

    ``total_variance`` μ is the noise the accountant assumes for the sum;
    ``contributors`` = t - c, the fewest honest survivors of a round that
    unmasks; ``variance`` = μ / (t - c), exactly.
    """

    total_variance: Fraction
    threshold: int
    colluders: int

    @property
    def contributors(self) -> int:
        """t - c: honest survivors guaranteed in every round that unmasks."""
        return self.threshold - self.colluders

    @property
    def variance(self) -> Fraction:
        """μ / (t - c), the Skellam variance each site adds to each coordinate."""
        return self.total_variance / self.contributors

    @property
    def own_noise_fraction(self) -> float:
        """1 / sqrt(t - c): one site's noise std as a fraction of the central std."""
        return 1.0 / math.sqrt(self.contributors)

    def residual_variance(self, honest_survivors: int) -> Fraction:
        """The noise variance left in the sum once colluders subtract their own shares.

        ``honest_survivors`` honest sites contributed; the colluders' shares
        are known to the adversary and carry no protection.
        """
        _count("honest_survivors", honest_survivors, 0)
        return self.variance * honest_survivors


def noise_share(total_variance: int | Fraction, *, threshold: int, colluders: int) -> NoiseShare:
    """The share each site adds so t - c honest survivors carry Sk(``total_variance``).

    Refuses c >= t (no honest survivor is guaranteed, so no central noise
    can be promised) and a share variance whose denominator the exact
    sampler cannot take (above 2^31: pass a rational with a smaller one).
    """
    if isinstance(total_variance, bool) or not isinstance(total_variance, int | Fraction):
        raise ConfigError("total_variance must be an int or a fractions.Fraction")
    mu = Fraction(total_variance)
    if mu <= 0:
        raise ConfigError(f"total_variance must be positive, got {mu}")
    t = _count("threshold", threshold, 1)
    c = _count("colluders", colluders, 0)
    if c >= t:
        raise ConfigError(
            f"colluders = {c} >= threshold = {t}: no honest survivor is guaranteed, so no "
            "site can size its noise share; raise the threshold or lower corrupt"
        )
    share = NoiseShare(total_variance=mu, threshold=t, colluders=c)
    if share.variance.denominator > 1 << 31:
        raise ConfigError(
            f"the share variance {share.variance} has a denominator above 2^31; "
            "give total_variance as an integer"
        )
    return share


def add_noise_share(
    values: npt.NDArray[np.int64], share: NoiseShare, *, rng: KeystreamRng | None = None
) -> npt.NDArray[np.int64]:
    """``values`` + Sk(share.variance) per coordinate, exact, from AES-256-CTR.

    ``rng`` defaults to a fresh :class:`KeystreamRng`; a fixed key is for
    known-answer tests only.
    """
    if not isinstance(share, NoiseShare):
        raise ConfigError("share must be a NoiseShare (see noise_share)")
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ConfigError("values must be a 1-D integer array")
    noise = skellam(KeystreamRng() if rng is None else rng, int(arr.size), share.variance)
    return arr.astype(np.int64) + noise
