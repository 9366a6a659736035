"""Calibrating hundreds of sites at once: every σ certified by the exact accountant."""

from __future__ import annotations

import math

import pytest

from securefl.dp import calibrate_noise, calibrate_noise_many, epsilon
from securefl.dp.calibration_many import _anchors, _calibrate_many
from securefl.dp.events import DPEvent
from securefl.errors import ConfigError

TARGET, DELTA = 1.0, 1e-5
# Sites of 3 to 60 batches, dense where sizes cluster: q = 1/batches, steps = 12 x batches.
BATCHES = [3, 4, 20, 21, 22, 23, 25, 27, 30, 33, 36, 40, 44, 48, 53, 58, 60]


def _sites(batches: list[int], rounds: int = 12) -> list[tuple[float, int]]:
    return [(1.0 / b, rounds * b) for b in batches]


def _eps(sigma: float, q: float, steps: int, accountant: str) -> float:
    event = DPEvent(
        noise_multiplier=sigma, sample_rate=q, steps=steps, max_grad_norm=1.0, secure_rng=True
    )
    return epsilon((event,), delta=DELTA, accountant=accountant)


@pytest.mark.parametrize(("accountant", "ratio"), [("prv", 1.25), ("rdp", 1.25), ("rdp", 4.0)])
def test_every_sigma_meets_the_target_under_the_exact_accountant(
    accountant: str, ratio: float
) -> None:
    requests = _sites(BATCHES)
    sigmas = calibrate_noise_many(
        requests, target_epsilon=TARGET, delta=DELTA, accountant=accountant, anchor_ratio=ratio
    )
    assert len(_anchors(sorted(requests), ratio)) < len(requests)  # some were interpolated
    for (q, steps), sigma in zip(requests, sigmas, strict=True):
        assert _eps(sigma, q, steps, accountant) <= TARGET  # never under-noised
        exact = calibrate_noise(
            target_epsilon=TARGET, delta=DELTA, sample_rate=q, steps=steps, accountant=accountant
        )
        # and hardly over: exact is within 1.005 of the smallest σ that meets the target
        assert exact / 1.005 <= sigma <= exact * 1.02


def test_a_wrong_interpolation_is_caught_by_the_certificate() -> None:
    # two sites on different lines of q x steps (1 round and 50 rounds) share no line;
    # a third on the first line sits between anchors of very different σ
    requests = [(1 / 3, 3), (1 / 300, 300), (1 / 30, 30), (1 / 30, 1500)]
    sigmas = calibrate_noise_many(
        requests, target_epsilon=TARGET, delta=DELTA, accountant="rdp", anchor_ratio=100.0
    )
    for (q, steps), sigma in zip(requests, sigmas, strict=True):
        assert _eps(sigma, q, steps, "rdp") <= TARGET


def test_repeated_requests_get_one_answer_in_request_order() -> None:
    requests = _sites([9, 4, 9, 30, 4])
    sigmas = calibrate_noise_many(requests, target_epsilon=TARGET, delta=DELTA, accountant="rdp")
    assert sigmas[0] == sigmas[2] and sigmas[1] == sigmas[4]
    assert sigmas[1] > sigmas[0] > sigmas[3]  # fewer batches, larger q: more noise


@pytest.mark.parametrize("skew", [0.3, 0.9, 0.97, 0.995])
def test_an_interpolation_far_too_low_is_never_returned(skew: float) -> None:
    # plays a bad interpolation: every guess below the true σ; the certificate must
    # raise it or fall back to an exact calibration, never return it
    requests = _sites(BATCHES)
    sigmas = _calibrate_many(
        requests,
        target_epsilon=TARGET,
        delta=DELTA,
        accountant="rdp",
        tolerance=0.005,
        anchor_ratio=4.0,
        skew=skew,
    )
    for (q, steps), sigma in zip(requests, sigmas, strict=True):
        assert _eps(sigma, q, steps, "rdp") <= TARGET


@pytest.mark.parametrize("ratio", [1.0, 0.5, math.inf, math.nan])
def test_an_anchor_ratio_that_does_not_grow_is_refused(ratio: float) -> None:
    with pytest.raises(ConfigError):
        calibrate_noise_many(_sites([5]), target_epsilon=TARGET, delta=DELTA, anchor_ratio=ratio)
