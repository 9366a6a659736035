"""Calibration's contract, fast: the σ returned meets the target and σ / (1 + tolerance) misses
it, prior events are composed in, impossible budgets and bad settings are refused; and the
search helpers keep their bracket invariant f(lo) > target >= f(hi) on a known function.
"""

from __future__ import annotations

import math

import pytest

import securefl.dp.calibration as calibration
from securefl.dp.accounting import epsilon
from securefl.dp.calibration import (
    MAX_NOISE_MULTIPLIER,
    _bracket,
    _groups,
    _locate,
    _log,
    _solve,
    calibrate_noise,
    site_calibration_request,
)
from securefl.dp.events import DPEvent
from securefl.errors import ConfigError


def ev(sigma: float, q: float, steps: int) -> DPEvent:
    return DPEvent(
        noise_multiplier=sigma, sample_rate=q, steps=steps, max_grad_norm=1.0, secure_rng=True
    )


def power(sigma: float) -> float:
    """A decreasing stand-in for ε(σ), 4 / σ²."""
    return 4.0 / sigma**2


@pytest.mark.parametrize(
    ("target", "q", "steps", "accountant", "tol"),
    [
        (3.0, 0.01, 500, "prv", 0.005),
        (1.0, 0.05, 100, "pld", 0.02),
        (8.0, 0.2, 50, "prv", 0.1),
    ],
)
def test_calibrated_sigma_meets_the_target_and_a_tolerance_less_misses_it(
    target: float, q: float, steps: int, accountant: str, tol: float
) -> None:
    sigma = calibrate_noise(
        target_epsilon=target,
        delta=1e-5,
        sample_rate=q,
        steps=steps,
        accountant=accountant,
        tolerance=tol,
    )
    assert epsilon([ev(sigma, q, steps)], delta=1e-5, accountant=accountant) <= target
    less = sigma / ((1 + tol) * (1 + 1e-8))
    assert epsilon([ev(less, q, steps)], delta=1e-5, accountant=accountant) > target


def test_prior_events_are_composed_with_the_calibrated_one() -> None:
    prior = (ev(1.2, 0.02, 200), ev(1.2, 0.02, 100))
    sigma = calibrate_noise(
        target_epsilon=4.0, delta=1e-5, sample_rate=0.02, steps=300, prior_events=prior
    )
    alone = calibrate_noise(target_epsilon=4.0, delta=1e-5, sample_rate=0.02, steps=300)
    assert sigma > alone
    assert epsilon([*prior, ev(sigma, 0.02, 300)], delta=1e-5) <= 4.0
    assert epsilon([*prior, ev(sigma / 1.006, 0.02, 300)], delta=1e-5) > 4.0


def test_a_budget_already_spent_or_out_of_reach_is_refused() -> None:
    spent = (ev(0.7, 0.1, 1000),)
    with pytest.raises(ConfigError):
        calibrate_noise(
            target_epsilon=1.0, delta=1e-5, sample_rate=0.01, steps=10, prior_events=spent
        )
    with pytest.raises(ConfigError):
        calibrate_noise(target_epsilon=1e-6, delta=1e-5, sample_rate=1.0, steps=10**6)


@pytest.mark.parametrize(
    "bad",
    [
        {"accountant": "gdp"},
        {"delta": True},
        {"delta": 0.0},
        {"delta": 1.0},
        {"delta": "1e-5"},
        {"target_epsilon": math.nan},
        {"target_epsilon": math.inf},
        {"target_epsilon": 0.0},
        {"target_epsilon": True},
        {"target_epsilon": "3"},
        {"tolerance": 0.0},
        {"tolerance": 1.0},
        {"sample_rate": 0.0},
        {"steps": 0},
    ],
)
def test_bad_settings_are_refused(bad: dict[str, object]) -> None:
    args: dict[str, object] = {
        "target_epsilon": 3.0,
        "delta": 1e-5,
        "sample_rate": 0.01,
        "steps": 100,
    }
    args.update(bad)
    with pytest.raises(ConfigError):
        calibrate_noise(**args)  # type: ignore[arg-type]


def test_site_request_is_poisson_at_one_over_batches_for_every_planned_step() -> None:
    assert site_calibration_request(4, rounds=3, epochs=2) == (0.25, 24)


def test_groups_merge_equal_settings_and_count_every_step() -> None:
    prior = [ev(2.0, 0.1, 5), ev(1.0, 0.1, 7), ev(2.0, 0.1, 3)]
    assert _groups(prior, 1.0, 0.1, 10) == ((1.0, 0.1, 17), (2.0, 0.1, 8))


def test_log_of_zero_is_finite() -> None:
    assert math.isfinite(_log(0.0))
    assert _log(math.e) == pytest.approx(1.0)


@pytest.mark.parametrize(("target", "rel"), [(1.0, 0.01), (0.04, 0.001), (3.9, 0.05)])
def test_solve_narrows_to_the_tolerance_keeping_the_crossing_inside(
    target: float, rel: float
) -> None:
    lo, hi = _solve(power, target, 0.5, 100.0, rel)
    assert power(lo) > target >= power(hi)
    assert hi / lo <= 1 + rel
    assert lo < 2 / math.sqrt(target) <= hi


# (1.0, 4.0): f(start / 2) equals the target exactly, so start / 2 is the bracket's hi.
@pytest.mark.parametrize(("target", "start"), [(1.0, 1.0), (0.01, 1.0), (100.0, 1.0), (1.0, 4.0)])
def test_bracket_holds_the_crossing_one_factor_wide(target: float, start: float) -> None:
    found = _bracket(power, target, start, 2.0)
    assert found is not None
    lo, hi = found
    assert power(lo) > target >= power(hi)
    assert hi / lo == pytest.approx(2.0)


def test_bracket_and_locate_give_up_only_beyond_the_largest_sigma() -> None:
    target = power(MAX_NOISE_MULTIPLIER) / 2
    assert _bracket(power, target, 1.0, 2.0) is None
    assert _locate(power, power, target, 1.0, 0.01) is None
    reachable = power(MAX_NOISE_MULTIPLIER) * 1.5
    found = _bracket(power, reachable, 1.0, 2.0)
    assert found is not None and power(found[0]) > reachable >= power(found[1])


@pytest.mark.parametrize("start", [1.5, 2.0, 3.0, 0.3])
def test_locate_brackets_the_crossing_from_a_start_on_either_side(start: float) -> None:
    found = _locate(power, lambda s: 1.3 * power(s), 1.0, start, 0.01)
    assert found is not None
    lo, hi = found
    assert power(lo) > 1.0 >= power(hi)
    assert lo < 2.0 <= hi


def test_solve_on_a_power_law_closes_in_a_few_steps() -> None:
    # ε is close to a power law of σ; on an exact one the secant in (log σ, log f) lands on
    # the crossing, and aiming a third of the tolerance past it closes the bracket in four
    # evaluations after the two ends, from a bracket 200 times wider than the tolerance.
    calls: list[float] = []

    def counted(sigma: float) -> float:
        calls.append(sigma)
        return power(sigma)

    lo, hi = _solve(counted, 1.0, 0.5, 100.0, 0.01)
    assert power(lo) > 1.0 >= power(hi) and hi / lo <= 1.01
    assert len(calls) <= 6


def test_locate_predicts_a_tight_bracket_on_a_power_law() -> None:
    calls: list[float] = []

    def counted(sigma: float) -> float:
        calls.append(sigma)
        return power(sigma)

    found = _locate(counted, lambda s: 1.3 * power(s), 1.0, math.sqrt(5.2), 0.01)
    assert found is not None
    lo, hi = found
    assert power(lo) > 1.0 >= power(hi)
    assert hi / lo <= 1.01 * (1 + 1e-9)
    assert len(calls) <= 4
    # The power-law step from the rough bound's slope lands near the crossing: the
    # accountant is never asked about a σ far outside the search range.
    assert all(0.5 < s < 4.0 for s in calls)


def test_locate_with_a_flat_rough_bound_falls_back_to_widening() -> None:
    found = _locate(power, lambda s: 1.0, 1.0, 2.5, 0.01)
    assert found is not None
    lo, hi = found
    assert power(lo) > 1.0 >= power(hi)


def test_a_missed_prediction_is_still_narrowed_to_the_tolerance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The prediction fails: only the 1.25-wide fallback bracket comes back.
    def missed(f, rough, target, start, tolerance):  # type: ignore[no-untyped-def]
        return _bracket(f, target, start, 1.25)

    monkeypatch.setattr(calibration, "_locate", missed)
    tol = 0.01
    sigma = calibrate_noise(
        target_epsilon=3.0, delta=1e-5, sample_rate=0.01, steps=500, tolerance=tol
    )
    assert epsilon([ev(sigma, 0.01, 500)], delta=1e-5) <= 3.0
    assert epsilon([ev(sigma / ((1 + tol) * (1 + 1e-8)), 0.01, 500)], delta=1e-5) > 3.0
