"""Skellam RDP and its Poisson subsampling: known answers, refusals, and checks against the truth.

The bounds are our own code (no well-kept library has them), so each is held
against something it cannot agree with by accident: exact rationals and
60-digit arithmetic from an independent generator, the exact Rényi divergence
of shifted Skellam pmfs (the bound must never be below it), the Gaussian it
must converge to, and dp-accounting's exact subsampled Gaussian.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ive, logsumexp

from securefl.dp.skellam_accounting import (
    ORDERS,
    calibrate_skellam_mu,
    poisson_subsampled_rdp,
    rdp_to_epsilon,
    skellam_epsilon,
    skellam_rdp,
    skellam_subsampled_rdp,
)
from securefl.dp.skellam_subsampling import add_direction_rdp, zhu_wang_general_rdp
from securefl.errors import ConfigError

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "dp_skellam_accounting.json").read_text()
)


def _logpmf(k: np.ndarray, mu: float) -> np.ndarray:
    """log P(K = k) for K = Poisson(μ/2) − Poisson(μ/2): e^{−μ} I_|k|(μ)."""
    with np.errstate(divide="ignore"):
        return np.log(ive(np.abs(k), mu))


def _support(shift: int, mu: float) -> np.ndarray:
    width = int(abs(shift) + 40 * math.sqrt(mu) + 40)
    return np.arange(-width, width + 1)


def _renyi(log_p: np.ndarray, log_q: np.ndarray, alpha: int) -> float:
    ok = np.isfinite(log_p) & np.isfinite(log_q)
    return float(logsumexp(alpha * log_p[ok] + (1 - alpha) * log_q[ok])) / (alpha - 1)


def exact_shift_rdp(alpha: int, shift: int, mu: float) -> float:
    """D_α(Sk + shift ‖ Sk), by summing the pmfs."""
    k = _support(shift, mu)
    return _renyi(_logpmf(k - shift, mu), _logpmf(k, mu), alpha)


def exact_subsampled_rdp(alpha: int, shift: int, mu: float, q: float) -> float:
    """max of both directions between (1−q)·Sk + q·(Sk + shift) and Sk, by summing the pmfs."""
    k = _support(shift, mu)
    log_q = _logpmf(k, mu)
    log_shifted = _logpmf(k - shift, mu)
    log_mix = (
        log_shifted if q == 1.0 else np.logaddexp(math.log1p(-q) + log_q, math.log(q) + log_shifted)
    )
    return max(_renyi(log_mix, log_q, alpha), _renyi(log_q, log_mix, alpha))


# -- known answers ------------------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["skellam_rdp"], ids=lambda c: f"a{c['alpha']}mu{c['mu']}")
def test_skellam_rdp_matches_the_exact_rational_value(case):
    got = skellam_rdp(
        [case["alpha"]], mu=case["mu"], l1_sensitivity=case["l1"], l2_sensitivity=case["l2"]
    )[0]
    num, den = map(int, case["exact"].split("/"))
    assert got == pytest.approx(num / den, rel=1e-12)


def _base(case: dict, alpha: int) -> np.ndarray:
    if case["base"] == "gaussian":
        return np.arange(2, alpha + 1) / (2 * case["sigma"] ** 2)
    return skellam_rdp(
        range(2, alpha + 1), mu=case["mu"], l1_sensitivity=case["l1"], l2_sensitivity=case["l2"]
    )


@pytest.mark.parametrize("case", VECTORS["subsampled"], ids=lambda c: f"{c['base']}a{c['alpha']}")
def test_zhu_wang_bound_matches_the_60_digit_value(case):
    alpha = case["alpha"]
    base = _base(case, alpha)
    got = zhu_wang_general_rdp(base, sample_rate=case["q"], orders=[alpha])[0]
    assert min(got, base[-1]) == pytest.approx(case["rdp"], rel=1e-9)


@pytest.mark.parametrize("case", VECTORS["subsampled"], ids=lambda c: f"{c['base']}a{c['alpha']}")
def test_accounted_bound_matches_the_60_digit_value(case):
    """The curve the accountant charges: the least of the general and the add/remove bound."""
    alpha = case["alpha"]
    if case["base"] == "gaussian":
        got = poisson_subsampled_rdp(_base(case, alpha), sample_rate=case["q"], orders=[alpha])[0]
        add = add_direction_rdp(_base(case, alpha), sample_rate=case["q"], orders=[alpha])[0]
        assert add == pytest.approx(case["add_direction"], rel=1e-9)
        assert add == pytest.approx(case["gaussian_exact"], rel=1e-9)
    else:
        got = skellam_subsampled_rdp(
            [alpha],
            mu=case["mu"],
            l1_sensitivity=case["l1"],
            l2_sensitivity=case["l2"],
            sample_rate=case["q"],
        )[0]
    assert got == pytest.approx(case["accounted"], rel=1e-9)


@pytest.mark.parametrize(
    "case", VECTORS["published_sampled_gaussian"], ids=lambda c: f"a{c['alpha']}"
)
def test_add_term_reproduces_the_published_sampled_gaussian_rdp(case):
    """On the Gaussian curve the add term is the exact sampled-Gaussian RDP (Mironov et al.)."""
    alpha = case["alpha"]
    base = np.arange(2, alpha + 1) / (2 * case["sigma"] ** 2)
    got = case["steps"] * add_direction_rdp(base, sample_rate=case["q"], orders=[alpha])[0]
    assert got == pytest.approx(case["rdp"], rel=1e-8)


@pytest.mark.parametrize("case", VECTORS["epsilon"], ids=lambda c: f"q{c['q']}mu{c['mu']}")
def test_skellam_epsilon_matches_the_generator(case):
    assert tuple(VECTORS["orders"]) == ORDERS
    got = skellam_epsilon(
        mu=case["mu"],
        l1_sensitivity=case["l1"],
        l2_sensitivity=case["l2"],
        sample_rate=case["q"],
        steps=case["steps"],
        delta=case["delta"],
    )
    assert got == pytest.approx(case["epsilon"], rel=1e-9)


def _value(x: object) -> object:
    return float(x) if isinstance(x, str) else x


@pytest.mark.parametrize("case", VECTORS["must_fail"], ids=lambda c: c["why"])
def test_bad_parameters_are_refused(case):
    with pytest.raises(ConfigError):
        skellam_epsilon(
            mu=_value(case["mu"]),
            l1_sensitivity=_value(case["l1"]),
            l2_sensitivity=_value(case["l2"]),
            sample_rate=case["q"],
            steps=case["steps"],
            delta=case["delta"],
        )


@pytest.mark.parametrize("orders", [[1], [0], [2.5], [True], []])
def test_orders_must_be_integers_of_at_least_two(orders):
    with pytest.raises(ConfigError):
        skellam_rdp(orders, mu=10.0, l1_sensitivity=1.0, l2_sensitivity=1.0)


def test_a_base_curve_that_does_not_reach_the_order_is_refused():
    with pytest.raises(ConfigError):
        poisson_subsampled_rdp(np.ones(3), sample_rate=0.1, orders=[8])
    with pytest.raises(ConfigError):
        poisson_subsampled_rdp(np.array([0.1, np.inf]), sample_rate=0.1, orders=[3])


# -- the bounds against the truth ------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    mu=st.floats(1.0, 5000.0),
    shifts=st.lists(st.integers(-4, 4), min_size=1, max_size=4),
    alpha=st.sampled_from([2, 3, 5, 8, 16, 32]),
)
def test_skellam_bound_is_never_below_the_exact_divergence(mu, shifts, alpha):
    """Any integer shift vector: Σ_i D_α(Sk + v_i ‖ Sk) <= the bound at ‖v‖₁, ‖v‖₂."""
    shifts = [s for s in shifts if s] or [1]
    exact = sum(exact_shift_rdp(alpha, s, mu) for s in shifts)
    l1 = float(sum(abs(s) for s in shifts))
    l2 = math.sqrt(sum(s * s for s in shifts))
    bound = skellam_rdp([alpha], mu=mu, l1_sensitivity=l1, l2_sensitivity=l2)[0]
    assert exact <= bound * (1 + 1e-9)


@settings(max_examples=20, deadline=None)
@given(
    mu=st.floats(4.0, 2000.0),
    shift=st.integers(1, 3),
    q=st.floats(0.001, 1.0),
    alpha=st.sampled_from([2, 3, 4, 8, 16]),
)
def test_subsampled_bound_is_never_below_the_exact_subsampled_divergence(mu, shift, q, alpha):
    """Both neighbouring directions of the Poisson-sampled Skellam, summed over the pmf."""
    exact = exact_subsampled_rdp(alpha, shift, mu, q)
    bound = skellam_subsampled_rdp(
        [alpha], mu=mu, l1_sensitivity=float(shift), l2_sensitivity=float(shift), sample_rate=q
    )[0]
    assert exact <= bound * (1 + 1e-9) + 1e-15


def test_skellam_rdp_converges_to_the_gaussians_as_the_variance_grows():
    """Δ₂ and Δ₁ fixed relative to √μ, μ → ∞: the bound tends to α Δ₂² / (2σ²)."""
    alphas = np.array([2, 8, 32, 128])
    gaps = []
    for mu in (1e2, 1e4, 1e6, 1e8):
        l2 = math.sqrt(mu) / 2.0  # noise multiplier σ/Δ₂ = 2
        l1 = 3 * l2  # an L1 norm a few times the L2 norm, as for a rounded gradient
        gauss = alphas * l2**2 / (2 * mu)
        got = skellam_rdp(alphas, mu=mu, l1_sensitivity=l1, l2_sensitivity=l2)
        assert np.all(got >= gauss)
        gaps.append(float(np.max(got / gauss - 1)))
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-3


def test_subsampled_at_rate_one_equals_the_unsubsampled_curve():
    base = skellam_rdp(range(2, 65), mu=500.0, l1_sensitivity=20.0, l2_sensitivity=8.0)
    got = poisson_subsampled_rdp(base, sample_rate=1.0, orders=range(2, 65))
    np.testing.assert_array_equal(got, base)
    eps_one = skellam_epsilon(
        mu=500.0, l1_sensitivity=20.0, l2_sensitivity=8.0, sample_rate=1.0, steps=3, delta=1e-5
    )
    assert eps_one == rdp_to_epsilon(
        ORDERS, 3 * skellam_rdp(ORDERS, mu=500.0, l1_sensitivity=20.0, l2_sensitivity=8.0), 1e-5
    )


@settings(max_examples=15, deadline=None)
@given(sigma=st.floats(0.7, 8.0), q=st.floats(1e-4, 0.05), steps=st.integers(1, 2000))
def test_on_a_gaussian_curve_it_bounds_dp_accountings_subsampled_gaussian(sigma, q, steps):
    """The charged bound is never below the exact subsampled Gaussian (Mironov et al. 2019).

    Every one of its bounds holds for any mechanism with that RDP curve, the
    Gaussian included, so none may dip under the Gaussian's exact value.
    """
    from dp_accounting.rdp import rdp_privacy_accountant as r

    orders = list(range(2, 129))
    base = np.arange(2, 129) / (2 * sigma**2)
    ours = poisson_subsampled_rdp(base, sample_rate=q, orders=orders)
    exact = np.asarray(r._compute_rdp_poisson_subsampled_gaussian(q, sigma, orders))
    assert np.all(ours >= exact * (1 - 1e-9))
    eps_ours = rdp_to_epsilon(orders, ours * steps, 1e-5)
    eps_exact = rdp_to_epsilon(orders, exact * steps, 1e-5)
    assert eps_ours >= eps_exact * (1 - 1e-9)


@settings(max_examples=15, deadline=None)
@given(sigma=st.floats(0.7, 8.0), q=st.floats(1e-4, 1e-3), steps=st.integers(1, 300))
def test_at_small_rates_it_matches_dp_accountings_subsampled_gaussian_closely(sigma, q, steps):
    """At q <= 1e-3 and up to 300 steps the charged bound's ε is within 15 % of the exact one."""
    from dp_accounting.rdp import rdp_privacy_accountant as r

    orders = list(range(2, 129))
    ours = poisson_subsampled_rdp(np.arange(2, 129) / (2 * sigma**2), sample_rate=q, orders=orders)
    exact = np.asarray(r._compute_rdp_poisson_subsampled_gaussian(q, sigma, orders))
    eps_ours = rdp_to_epsilon(orders, ours * steps, 1e-5)
    eps_exact = rdp_to_epsilon(orders, exact * steps, 1e-5)
    assert eps_exact * (1 - 1e-9) <= eps_ours <= eps_exact * 1.15 + 1e-4


def test_large_orders_and_tiny_rates_stay_finite():
    curve = skellam_subsampled_rdp(
        ORDERS, mu=1e4, l1_sensitivity=300.0, l2_sensitivity=100.0, sample_rate=1e-9
    )
    assert np.all(np.isfinite(curve)) and np.all(curve >= 0)
    assert np.all(np.diff(curve) >= -1e-15)  # RDP is non-decreasing in the order


# -- calibration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "steps", "target"), [(0.01, 1000, 1.0), (0.0016, 6250, 0.5), (1.0, 1, 2.0)]
)
def test_calibration_returns_the_smallest_variance_meeting_the_target(q, steps, target):
    kw = dict(l1_sensitivity=300.0, l2_sensitivity=100.0, sample_rate=q, steps=steps, delta=1e-5)
    mu = calibrate_skellam_mu(target_epsilon=target, tolerance=0.005, **kw)
    assert skellam_epsilon(mu=mu, **kw) <= target
    assert skellam_epsilon(mu=mu / 1.005, **kw) > target


def test_calibration_refuses_an_unreachable_target():
    with pytest.raises(ConfigError, match="too small"):
        calibrate_skellam_mu(
            target_epsilon=1e-9,
            delta=1e-5,
            sample_rate=1.0,
            steps=10**6,
            l1_sensitivity=1e6,
            l2_sensitivity=1e6,
        )


@pytest.mark.parametrize(
    ("mu", "shift", "q", "steps"), [(400.0, 5, 0.05, 50), (50.0, 3, 0.1, 20), (1e4, 30, 0.01, 300)]
)
def test_epsilon_is_never_below_dp_accountings_pld_of_the_skellam_pmf(mu, shift, q, steps):
    """A second analysis of the same mechanism: dp-accounting's PLD from the exact pmfs.

    For a shift along one coordinate the Poisson-sampled Skellam mechanism's
    privacy loss distribution (both neighbouring directions, pessimistic) is
    computed from the pmfs and composed; the RDP bound's ε must be above it.
    (Measured: it was 1.6-2.8x above with Zhu & Wang's general bound alone.)
    """
    from dp_accounting.pld import privacy_loss_distribution as pld

    k = _support(shift, mu)
    log_q = _logpmf(k, mu)
    log_mix = np.logaddexp(math.log1p(-q) + log_q, math.log(q) + _logpmf(k - shift, mu))
    ok = np.isfinite(log_q) & np.isfinite(log_mix)
    dist = pld.from_two_probability_mass_functions(
        {int(o): float(v) for o, v in zip(k[ok], log_q[ok], strict=True)},
        {int(o): float(v) for o, v in zip(k[ok], log_mix[ok], strict=True)},
        pessimistic_estimate=True,
        value_discretization_interval=1e-4,
        symmetric=False,
    )
    exact = dist.self_compose(steps).get_epsilon_for_delta(1e-5)
    bound = skellam_epsilon(
        mu=mu,
        l1_sensitivity=float(shift),
        l2_sensitivity=float(shift),
        sample_rate=q,
        steps=steps,
        delta=1e-5,
    )
    assert exact <= bound


@pytest.mark.parametrize(
    "bad",
    [
        {"l2_sensitivity": "100"},
        {"l1_sensitivity": 0.0},
        {"tolerance": 0.0},
        {"tolerance": 1.5},
        {"target_epsilon": -1.0},
        {"delta": 1.0},
    ],
)
def test_calibration_refuses_bad_arguments(bad):
    kw = dict(
        target_epsilon=1.0,
        delta=1e-5,
        sample_rate=0.01,
        steps=100,
        l1_sensitivity=300.0,
        l2_sensitivity=100.0,
    )
    with pytest.raises(ConfigError):
        calibrate_skellam_mu(**{**kw, **bad})
