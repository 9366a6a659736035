"""Calibrating hundreds of sites at once: rounding to the grid may add noise, never remove it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.dp import calibrate_noise, epsilon
from securefl.dp.calibration import calibrate_noise_many, grid_point
from securefl.dp.events import DPEvent
from securefl.errors import ConfigError

TARGET, DELTA = 1.0, 1e-5


def _sites(batches: list[int], rounds: int = 12) -> list[tuple[float, int]]:
    """(q, steps) as ``Site.privatize`` computes them for sites of ``batches`` batches."""
    return [(1.0 / b, rounds * b) for b in batches]


def _eps(sigma: float, q: float, steps: int, accountant: str) -> float:
    event = DPEvent(
        noise_multiplier=sigma, sample_rate=q, steps=steps, max_grad_norm=1.0, secure_rng=True
    )
    return epsilon((event,), delta=DELTA, accountant=accountant)


@settings(max_examples=200, deadline=None)
@given(
    q=st.floats(1e-5, 1.0),
    steps=st.integers(1, 10**6),
    grid=st.sampled_from([1.001, 1.02, 1.1, 2.0]),
)
def test_grid_point_dominates_the_request_and_stays_within_one_grid_step(
    q: float, steps: int, grid: float
) -> None:
    gq, gsteps = grid_point(q, steps, grid)
    assert q <= gq <= min(1.0, q * grid * (1 + 1e-12))
    assert steps <= gsteps <= math.ceil(steps * grid * 1.001 * (1 + 1e-9))


# Sites of 2 to 300 batches, none on a grid point: the rounding is never a no-op.
BATCHES = [3, 5, 7, 11, 17, 29, 53, 97, 181, 293]


@pytest.mark.parametrize(("accountant", "grid"), [("prv", 1.02), ("rdp", 1.02), ("rdp", 1.1)])
def test_every_rounded_sigma_meets_the_target_under_the_exact_accountant(
    accountant: str, grid: float
) -> None:
    requests = _sites(BATCHES)
    sigmas = calibrate_noise_many(
        requests, target_epsilon=TARGET, delta=DELTA, accountant=accountant, grid=grid
    )
    for (q, steps), sigma in zip(requests, sigmas, strict=True):
        assert _eps(sigma, q, steps, accountant) <= TARGET  # never under-noised
        # and never far over: within the documented grid**1.5 of an exact calibration
        exact = calibrate_noise(
            target_epsilon=TARGET, delta=DELTA, sample_rate=q, steps=steps, accountant=accountant
        )
        assert exact <= sigma * (1 + 0.005) and sigma <= exact * grid**1.5 * 1.001 * 1.005


def test_without_a_grid_each_distinct_site_is_calibrated_exactly() -> None:
    requests = _sites([4, 9, 4, 9, 30])
    sigmas = calibrate_noise_many(
        requests, target_epsilon=TARGET, delta=DELTA, accountant="rdp", grid=None
    )
    for (q, steps), sigma in zip(requests, sigmas, strict=True):
        assert sigma == calibrate_noise(
            target_epsilon=TARGET, delta=DELTA, sample_rate=q, steps=steps, accountant="rdp"
        )


def test_sites_in_one_grid_cell_share_one_calibration() -> None:
    # 58 and 59 batches (12 rounds) round to the same grid point at 1.02
    assert grid_point(1 / 58, 12 * 58, 1.02) == grid_point(1 / 59, 12 * 59, 1.02)
    a, b = calibrate_noise_many(
        _sites([58, 59]), target_epsilon=TARGET, delta=DELTA, accountant="rdp"
    )
    assert a == b


@pytest.mark.parametrize("grid", [1.0, 0.5, math.inf, math.nan])
def test_a_grid_that_does_not_round_up_is_refused(grid: float) -> None:
    with pytest.raises(ConfigError):
        calibrate_noise_many(_sites([5]), target_epsilon=TARGET, delta=DELTA, grid=grid)
