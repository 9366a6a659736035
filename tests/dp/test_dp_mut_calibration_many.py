"""calibrate_noise_many keeps its cost and closeness promises, not only the certificate.

The certificate (every σ meets the target under the exact accountant) is
checked in test_dp_calibration_many.py. These check the rest of the module's
contract, which a weakened search would break without breaking the
certificate: anchors are exact calibrations at the caller's tolerance; a good
interpolation costs one accountant call per site; sites on different lines
of q·steps are never mixed; and a bad guess is raised in small steps or
replaced by an exact calibration, so σ stays close to the exact one.
"""

from __future__ import annotations

from typing import Any

import pytest

from securefl.dp import calibrate_noise
from securefl.dp import calibration_many as cm

TARGET, DELTA = 1.0, 1e-5


def _sites(batches: list[int], rounds: int = 12) -> list[tuple[float, int]]:
    return [(1.0 / b, rounds * b) for b in batches]


def _exact(request: tuple[float, int], tolerance: float = 0.005, target: float = TARGET) -> float:
    return calibrate_noise(
        target_epsilon=target,
        delta=DELTA,
        sample_rate=request[0],
        steps=request[1],
        accountant="rdp",
        tolerance=tolerance,
    )


def test_anchors_are_exact_calibrations_at_the_callers_tolerance() -> None:
    requests = _sites([4, 5, 8])
    sigmas = cm.calibrate_noise_many(
        requests, target_epsilon=TARGET, delta=DELTA, accountant="rdp", tolerance=0.05
    )
    anchors = cm._anchors(sorted(requests), cm.ANCHOR_RATIO)
    for request, sigma in zip(requests, sigmas, strict=True):
        if request in anchors:
            assert sigma == _exact(request, tolerance=0.05)


def test_the_anchors_are_one_at_least_every_ratio_of_q() -> None:
    n = 12
    line = [(0.1, n), (0.12, n), (0.125, n), (0.13, n), (0.2, n)]
    # 0.125 = 0.1 x 1.25 is not beyond the ratio, 0.13 is: 0.125 (the last within) is the
    # next anchor; then 0.2 > 0.125 x 1.25, so 0.13 is; the largest q always is
    assert cm._anchors(line, 1.25) == [(0.1, n), (0.125, n), (0.13, n), (0.2, n)]
    assert cm._anchors(line[:2], 1.25) == line[:2]


def test_one_accountant_call_per_interpolated_site_and_lines_kept_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = {"exact": 0, "certify": 0}
    real_exact, real_eps = getattr(cm, "calibrate_noise"), getattr(cm, "epsilon")

    def exact(**kw: Any) -> float:
        calls["exact"] += 1
        return float(real_exact(**kw))

    def certify(*args: Any, **kw: Any) -> float:
        calls["certify"] += 1
        return float(real_eps(*args, **kw))

    monkeypatch.setattr(cm, "calibrate_noise", exact)
    monkeypatch.setattr(cm, "epsilon", certify)
    # two lines: q·steps = 12 and 12.4 (they would merge if rounded to an integer)
    line_a = [(1 / 20, 240), (1 / 21, 252), (1 / 22, 264)]
    line_b = [(12.4 / n, n) for n in (248, 258, 270)]
    cm.calibrate_noise_many(line_a + line_b, target_epsilon=TARGET, delta=DELTA, accountant="rdp")
    # each line: its two ends are anchors, its middle site is interpolated and certified
    assert calls == {"exact": 4, "certify": 2}


@pytest.mark.parametrize("target", [TARGET, 10.0])  # at ε = 10, σ < 1
def test_a_bad_guess_is_raised_in_small_steps_or_replaced_by_the_exact_sigma(
    target: float,
) -> None:
    requests = _sites([20, 22, 25, 30, 36])
    sigmas = cm._calibrate_many(
        requests,
        target_epsilon=target,
        delta=DELTA,
        accountant="rdp",
        tolerance=0.005,
        anchor_ratio=4.0,
        skew=0.97,
    )
    for request, sigma in zip(requests, sigmas, strict=True):
        exact = _exact(request, target=target)
        assert exact / 1.005 <= sigma <= exact * 1.015
