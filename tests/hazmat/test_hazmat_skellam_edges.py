"""Exact Poisson sampling at its edges: the integer bounds of r(k), small means, the 2^31 limit.

The table of :mod:`securefl.hazmat.skellam` rests on integer bounds
lo <= 2^prec·r(k) <= hi of the ratio r(k) = p(k)/p(mode); the sampled law is
proportional to them, so a bound off by one factor shifts the law, and a
bound that is not an exact integer (or not on its side) breaks the
exactness the module claims. The means here are chosen so that no other
test builds their table first (the tables are cached per process).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from securefl.errors import ConfigError
from securefl.hazmat import skellam as sk
from securefl.hazmat.dgauss import KeystreamRng
from securefl.hazmat.skellam import MAX_MEAN_DENOMINATOR, poisson, skellam


def fixed(label: str) -> KeystreamRng:
    return KeystreamRng((label.encode() * 32)[:32])


def exact_ratio(lam: Fraction, m: int, k: int) -> Fraction:
    """r(k) = p(k)/p(m) = λ^(k-m)·m!/k!, computed with Fractions."""
    return lam ** (k - m) * Fraction(math.factorial(m), math.factorial(k))


@pytest.mark.parametrize("lam", [Fraction(1, 3), Fraction(5, 2), Fraction(41, 7), Fraction(10)])
@pytest.mark.parametrize("prec", [64, 128, 192])
def test_r_bounds_are_integers_that_bracket_the_exact_ratio_tightly(
    lam: Fraction, prec: int
) -> None:
    m = lam.numerator // lam.denominator
    for k in range(max(0, m - 12), m + 13):
        lo, hi = sk._r_bounds(lam, m, k, prec)
        assert type(lo) is int and type(hi) is int
        exact = exact_ratio(lam, m, k) * (1 << prec)
        assert lo <= exact <= hi, (lam, k)
        # directed rounding loses at most one unit per factor
        assert hi - lo <= abs(k - m) + 1, (lam, k, hi - lo)


def _pmf_p_value(lam: Fraction, label: str, n: int = 40_000) -> float:
    draws = poisson(fixed(label), n, lam)
    top = int(draws.max())
    observed = np.bincount(draws, minlength=top + 2).astype(float)
    pmf = stats.poisson.pmf(np.arange(top + 1), float(lam))
    expected = np.append(pmf, max(0.0, 1.0 - pmf.sum())) * n
    observed = np.append(observed[: top + 1], 0.0)
    keep = expected >= 5  # pool the sparse tail into one cell
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] < 5:
        obs[-2] += obs[-1]
        exp[-2] += exp[-1]
        obs, exp = obs[:-1], exp[:-1]
    return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


@pytest.mark.parametrize("lam", [Fraction(3, 7), Fraction(13, 4)])
def test_small_means_above_and_below_the_mode_fit_the_exact_pmf(lam: Fraction) -> None:
    # For λ just above an integer, every k > mode has r(k) about (mode+1)/λ
    # times smaller than at the mode: a missing factor shows at once.
    assert _pmf_p_value(lam, f"small-{lam}") > 1e-4


def test_a_skellam_variance_with_denominator_two_to_the_31_is_accepted() -> None:
    edge = Fraction(3, MAX_MEAN_DENOMINATOR // 2)  # the largest denominator allowed
    out = skellam(fixed("den-31"), 8, edge + 4)
    assert out.dtype == np.int64 and out.shape == (8,)
    with pytest.raises(ConfigError):
        skellam(fixed("den-31"), 8, Fraction(1, MAX_MEAN_DENOMINATOR // 2 + 1) + 4)
