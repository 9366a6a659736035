"""The Skellam accountant's composition and calibration, checked against independent curves.

``composed_epsilon`` is what every accountant reports for distributed rounds
and for a site's Skellam rounds composed with its local DP-SGD. A term off in
it (a group subtracted, a curve divided, a sensitivity dropped) under-reports
ε. Each part is recomputed here by another route: the Skellam groups with
``skellam_subsampled_rdp``, the Gaussian groups with the exact sampled
Gaussian RDP at integer orders (Mironov, Talwar, Zhang 2019), which is the
"add" term of our subsampling bound on the Gaussian's curve α/(2σ²), a route
that shares no code with Opacus's ``compute_rdp`` that the accountant calls.
"""

from __future__ import annotations

import numpy as np
import pytest

from securefl.dp.skellam_accounting import (
    ORDERS,
    calibrate_skellam_mu,
    composed_epsilon,
    rdp_to_epsilon,
    skellam_epsilon,
    skellam_rdp,
    skellam_subsampled_rdp,
)
from securefl.dp.skellam_subsampling import (
    add_direction_rdp,
    poisson_subsampled_rdp,
    remove_add_rdp,
)
from securefl.errors import ConfigError

DELTA = 1e-5
GROUP_A = (4.0e4, 600.0, 100.0, 0.01, 50)  # mu, l1, l2, q, steps
GROUP_B = (9.0e4, 300.0, 120.0, 0.02, 30)
GAUSS = (1.1, 0.02, 100)  # sigma, q, steps


def _skellam_curve(group: tuple[float, float, float, float, int]) -> np.ndarray:
    mu, l1, l2, q, steps = group
    curve = skellam_subsampled_rdp(
        ORDERS, mu=mu, l1_sensitivity=l1, l2_sensitivity=l2, sample_rate=q
    )
    return steps * np.asarray(curve)


def _sampled_gaussian_curve(sigma: float, q: float, steps: int) -> np.ndarray:
    top = max(ORDERS)
    base = [k / (2 * sigma**2) for k in range(2, top + 1)]
    return steps * add_direction_rdp(base, sample_rate=q, orders=ORDERS)


def test_one_skellam_group_composes_to_its_own_epsilon() -> None:
    mu, l1, l2, q, steps = GROUP_A
    alone = skellam_epsilon(
        mu=mu, l1_sensitivity=l1, l2_sensitivity=l2, sample_rate=q, steps=steps, delta=DELTA
    )
    assert composed_epsilon([GROUP_A], delta=DELTA) == pytest.approx(alone, rel=1e-12)


def test_skellam_groups_add_their_curves() -> None:
    expected = rdp_to_epsilon(ORDERS, _skellam_curve(GROUP_A) + _skellam_curve(GROUP_B), DELTA)
    got = composed_epsilon([GROUP_A, GROUP_B], delta=DELTA)
    assert got == pytest.approx(expected, rel=1e-12)
    assert got > composed_epsilon([GROUP_A], delta=DELTA)
    assert got > composed_epsilon([GROUP_B], delta=DELTA)


def test_gaussian_groups_match_the_exact_sampled_gaussian_rdp() -> None:
    expected = rdp_to_epsilon(ORDERS, _sampled_gaussian_curve(*GAUSS), DELTA)
    assert composed_epsilon([], [GAUSS], delta=DELTA) == pytest.approx(expected, rel=1e-6)


def test_skellam_and_gaussian_groups_compose_by_adding_both_curves() -> None:
    curve = _skellam_curve(GROUP_A) + _sampled_gaussian_curve(*GAUSS)
    expected = rdp_to_epsilon(ORDERS, curve, DELTA)
    assert composed_epsilon([GROUP_A], [GAUSS], delta=DELTA) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("steps", [0, True, 2.0])
def test_a_skellam_group_needs_an_integer_step_count_of_at_least_one(steps: object) -> None:
    with pytest.raises(ConfigError):
        composed_epsilon([(*GROUP_A[:4], steps)], delta=DELTA)  # type: ignore[list-item]


CALIBRATION = dict(
    target_epsilon=1.0,
    delta=DELTA,
    sample_rate=0.01,
    steps=100,
    l1_sensitivity=300.0,
    l2_sensitivity=100.0,
)


@pytest.mark.parametrize("tolerance", ["0.01", 1.0, 1, True])
def test_calibration_refuses_a_tolerance_that_is_not_a_float_in_zero_one(
    tolerance: object,
) -> None:
    with pytest.raises(ConfigError, match=r"^tolerance\b"):
        calibrate_skellam_mu(**CALIBRATION, tolerance=tolerance)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"), [("target_epsilon", 0.0), ("l2_sensitivity", -1.0), ("l1_sensitivity", 0)]
)
def test_calibration_names_the_refused_setting(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}\b"):
        calibrate_skellam_mu(**{**CALIBRATION, field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["mu", "l1_sensitivity", "l2_sensitivity"])
def test_the_skellam_curve_names_the_refused_setting(field: str) -> None:
    good = {"mu": 10.0, "l1_sensitivity": 1.0, "l2_sensitivity": 1.0}
    with pytest.raises(ConfigError, match=rf"^{field}\b"):
        skellam_rdp([2, 3], **{**good, field: 0.0})


@pytest.mark.parametrize("q", [0.1, 0.3, 0.6])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
def test_the_bound_at_an_order_does_not_depend_on_the_other_orders_asked(
    q: float, sigma: float
) -> None:
    # With 3 the largest order asked, the "remove" term M_3 must still be built
    # (leaving it out under-reports ε at order 3, by up to 30 % here).
    base = [k / (2 * sigma**2) for k in range(2, 11)]
    few = remove_add_rdp(base[:2], sample_rate=q, orders=[2, 3])
    many = remove_add_rdp(base, sample_rate=q, orders=[2, 3, 10])
    np.testing.assert_array_equal(few, many[:2])
    few = poisson_subsampled_rdp(base[:2], sample_rate=q, orders=[3])
    many = poisson_subsampled_rdp(base, sample_rate=q, orders=[3, 10])
    assert few[0] == many[0]
