"""The subsampled RDP bound of docs/distributed_dp_accounting.md: sound for any mechanism, tight.

Soundness is checked where the truth is computable: on arbitrary pairs of
distributions on a few points (any mechanism's neighbouring outputs look like
that), the exact Rényi divergence of the Poisson-sampled pair, in both
neighbouring directions, must never exceed the bound built from the pair's
own RDP curve. That is the theorem's statement with nothing about the Skellam
assumed, so a bound tightened beyond its proof fails here. Against the
Gaussian: the Skellam bound must stay above dp-accounting's exact sampled
Gaussian at every order and approach it as the noise grows. Tightness: the
noise it needs at small rates is close to the Gaussian's, where Zhu & Wang's
general bound alone needed a hundred times more.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from securefl.dp.skellam_accounting import (
    ORDERS,
    rdp_to_epsilon,
    skellam_epsilon,
    skellam_rdp,
    skellam_subsampled_rdp,
)
from securefl.dp.skellam_subsampling import (
    poisson_subsampled_rdp,
    remove_add_rdp,
    zhu_wang_general_rdp,
)


def _renyi(log_p: np.ndarray, log_q: np.ndarray, alpha: int) -> float:
    return float(logsumexp(alpha * log_p + (1 - alpha) * log_q)) / (alpha - 1)


def _pair(weights: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    w = np.array(weights, dtype=np.float64)
    return np.log(w[:, 0] / w[:, 0].sum()), np.log(w[:, 1] / w[:, 1].sum())


_PAIRS = st.lists(st.tuples(st.floats(1e-3, 1.0), st.floats(1e-3, 1.0)), min_size=2, max_size=6)


@settings(max_examples=150, deadline=None)
@given(pair=_PAIRS, q=st.floats(1e-3, 0.999), alpha=st.integers(2, 24))
def test_bound_holds_for_any_mechanism_in_both_directions(pair, q, alpha):
    """Any neighbouring pair (p0 = M(S), p1 = M(S ∪ {x})): exact sampled divergences <= bound."""
    log_p0, log_p1 = _pair(pair)
    curve = np.array(
        [
            max(_renyi(log_p1, log_p0, k), _renyi(log_p0, log_p1, k), 0.0)
            for k in range(2, alpha + 1)
        ]
    )
    log_mix = np.logaddexp(math.log1p(-q) + log_p0, math.log(q) + log_p1)
    exact = max(_renyi(log_mix, log_p0, alpha), _renyi(log_p0, log_mix, alpha))
    ours = remove_add_rdp(curve, sample_rate=q, orders=[alpha])[0]
    charged = poisson_subsampled_rdp(curve, sample_rate=q, orders=[alpha])[0]
    assert exact <= ours * (1 + 1e-9) + 1e-12
    assert exact <= charged * (1 + 1e-9) + 1e-12


def _sampled_gaussian(q: float, sigma: float, orders: list[int]) -> np.ndarray:
    from dp_accounting.rdp import rdp_privacy_accountant as r

    return np.asarray(r._compute_rdp_poisson_subsampled_gaussian(q, sigma, orders))


@settings(max_examples=40, deadline=None)
@given(
    q=st.floats(1e-4, 1.0),
    sigma=st.floats(0.5, 50.0),
    alpha=st.sampled_from([2, 3, 5, 8, 16, 32, 64, 128, 256]),
    l2=st.floats(1.0, 1e4),
    l1_ratio=st.floats(1.0, 30.0),
)
def test_skellam_bound_is_never_below_dp_accountings_sampled_gaussian(
    q, sigma, alpha, l2, l1_ratio
):
    """Same noise multiplier σ = √μ / Δ₂: the Skellam's charged RDP is at least the Gaussian's."""
    mu = (sigma * l2) ** 2
    ours = skellam_subsampled_rdp(
        [alpha], mu=mu, l1_sensitivity=l1_ratio * l2, l2_sensitivity=l2, sample_rate=q
    )[0]
    gauss = _sampled_gaussian(q, sigma, [alpha])[0]
    assert ours >= gauss * (1 - 1e-9)


def test_skellam_bound_approaches_the_sampled_gaussian_from_above_as_the_scale_grows():
    """σ fixed, μ → ∞: the discreteness term vanishes and the ratio to the Gaussian falls.

    At q = 1 it tends to 1. At q < 1 it tends to what the bound gives on the
    Gaussian's own curve: within 1 + 2qα at the orders that matter here
    (the remove direction's price, docs/distributed_dp_accounting.md).
    """
    orders = [2, 4, 8, 16, 32]
    for q in (1.0, 0.05, 0.01, 0.001):
        for sigma in (1.0, 4.0):
            gauss = _sampled_gaussian(q, sigma, orders)
            limit = poisson_subsampled_rdp(
                np.arange(2, 33) / (2 * sigma**2), sample_rate=q, orders=orders
            )
            ratios = []
            for mu_scale in (1e2, 1e4, 1e6, 1e8):
                l2 = math.sqrt(mu_scale)
                got = skellam_subsampled_rdp(
                    orders,
                    mu=(sigma * l2) ** 2,
                    l1_sensitivity=5 * l2,
                    l2_sensitivity=l2,
                    sample_rate=q,
                )
                assert np.all(got >= gauss * (1 - 1e-9))
                ratios.append(got / gauss)
            assert all(np.all(a >= b * (1 - 1e-12)) for a, b in itertools.pairwise(ratios))
            assert np.allclose(ratios[-1], limit / gauss, rtol=1e-3)
            bound = 1 + 2 * q * np.array(orders) if q < 1 else np.ones(len(orders))
            assert np.all(limit / gauss <= bound * (1 + 1e-6))


def test_zhu_wangs_general_bound_alone_keeps_a_floor_that_noise_cannot_remove():
    """Why the charge changed: with ε(l) → 0 the general bound tends to a positive constant."""
    q, alpha = 0.01, 32
    floor = math.log1p(
        2 * (1 - sum(math.comb(alpha, k) * q**k * (1 - q) ** (alpha - k) for k in range(3)))
    ) / (alpha - 1)
    tiny = np.full(alpha - 1, 1e-12)
    general = zhu_wang_general_rdp(tiny, sample_rate=q, orders=[alpha])[0]
    ours = remove_add_rdp(tiny, sample_rate=q, orders=[alpha])[0]
    assert general >= floor > 1e-6
    assert ours < 1e-12


@settings(max_examples=30, deadline=None)
@given(
    q1=st.floats(1e-4, 1.0),
    q2=st.floats(1e-4, 1.0),
    mu1=st.floats(10.0, 1e8),
    mu2=st.floats(10.0, 1e8),
    alpha=st.sampled_from([2, 3, 7, 20, 64, 256]),
)
def test_bound_grows_with_the_rate_and_shrinks_with_the_noise(q1, q2, mu1, mu2, alpha):
    kw = dict(l1_sensitivity=60.0, l2_sensitivity=20.0)
    lo_q, hi_q = sorted((q1, q2))
    lo_mu, hi_mu = sorted((mu1, mu2))
    at = {
        (q, mu): skellam_subsampled_rdp([alpha], mu=mu, sample_rate=q, **kw)[0]
        for q in (lo_q, hi_q)
        for mu in (lo_mu, hi_mu)
    }
    assert at[(lo_q, lo_mu)] <= at[(hi_q, lo_mu)] * (1 + 1e-12)
    assert at[(lo_q, hi_mu)] <= at[(hi_q, hi_mu)] * (1 + 1e-12)
    assert at[(lo_q, hi_mu)] <= at[(lo_q, lo_mu)] * (1 + 1e-12)
    assert at[(hi_q, hi_mu)] <= at[(hi_q, lo_mu)] * (1 + 1e-12)


@settings(max_examples=10, deadline=None)
@given(steps=st.integers(1, 5000), extra=st.integers(1, 5000), q=st.floats(1e-3, 1.0))
def test_epsilon_grows_with_the_steps(steps, extra, q):
    kw = dict(mu=4e6, l1_sensitivity=6000.0, l2_sensitivity=1000.0, sample_rate=q, delta=1e-5)
    assert skellam_epsilon(steps=steps, **kw) <= skellam_epsilon(steps=steps + extra, **kw)


def test_small_rate_small_epsilon_needs_about_the_gaussians_noise():
    """ε = 0.25, q = 0.01, 1000 steps, δ = 1e-5, the plan's sensitivities (clip 1024, d = 31).

    The Gaussian needs σ = 4.73 (dp-accounting's sampled Gaussian, same
    conversion); the charged bound reaches ε <= 0.25 at σ = 6.4, where Zhu &
    Wang's general bound alone still gives ε ≈ 0.51 (its per-step floor:
    reaching 0.25 took σ ≈ 461).
    """
    l2 = 1024 + math.sqrt(31)
    l1 = math.sqrt(31) * l2
    sigma = 6.4
    kw = dict(mu=(sigma * l2) ** 2, l1_sensitivity=l1, l2_sensitivity=l2, sample_rate=0.01)
    assert skellam_epsilon(steps=1000, delta=1e-5, **kw) <= 0.25
    base = skellam_rdp(range(2, max(ORDERS) + 1), mu=kw["mu"], l1_sensitivity=l1, l2_sensitivity=l2)
    general = zhu_wang_general_rdp(base, sample_rate=0.01, orders=ORDERS)
    general = np.minimum(general, base[np.array(ORDERS) - 2])
    assert rdp_to_epsilon(ORDERS, 1000 * general, 1e-5) > 1.8 * 0.25
    gauss = rdp_to_epsilon(ORDERS, 1000 * _sampled_gaussian(0.01, 4.73, list(ORDERS)), 1e-5)
    assert gauss <= 0.25


@settings(max_examples=12, deadline=None)
@given(
    q=st.sampled_from([1e-9, 1e-4, 0.003, 0.05, 0.3, 0.9, 1.0]),
    mu=st.floats(10.0, 1e9),
    l2=st.floats(1.0, 2000.0),
    l1_ratio=st.floats(1.0, 30.0),
)
def test_the_audits_second_implementation_agrees_at_every_order(q, mu, l2, l1_ratio):
    """The audit's code-independent evaluation (reports._rdp_independent) of the same bound."""
    from securefl.reports._rdp_independent import AUDIT_ORDERS, _part_rdp

    assert AUDIT_ORDERS == ORDERS
    theirs = np.asarray(_part_rdp(("skellam", mu, l1_ratio * l2, l2, q, 1)))
    ours = skellam_subsampled_rdp(
        ORDERS, mu=mu, l1_sensitivity=l1_ratio * l2, l2_sensitivity=l2, sample_rate=q
    )
    np.testing.assert_allclose(theirs, ours, rtol=1e-8, atol=0)
