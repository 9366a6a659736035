"""Noise calibration for hundreds of sites of different sizes, without seconds per site.

Why: a site's sample rate is q = 1/batches and its steps are
rounds · epochs · batches, so sites of different sizes need different σ, and
:func:`~securefl.dp.calibrate_noise` costs 0.2-0.4 s for each distinct
(q, steps) (a repeated one is free: the accountant's results are cached).
At 500 sites that is minutes before the first round.

How: sites of one federation share q · steps (rounds × epochs), and along
that line log σ is a smooth, nearly linear function of log q. So only
*anchors* (the smallest and largest q, and one every factor
``anchor_ratio`` of q between them) are calibrated exactly; every other
site's σ is interpolated in (log q, log σ) between its two anchors, raised
by ``1 + tolerance``, and then **certified**: the exact accountant evaluates
the site's own event (its own q and steps) once, and σ is accepted only if
ε ≤ target. A miss raises σ by another ``1 + tolerance`` and evaluates
again (a few times at most, then the site is calibrated exactly).

So no σ is ever returned that the exact accountant has not shown to meet
the target for that very site: the interpolation only chooses where to
look, it is never trusted. A site costs one accountant call (~50 ms)
instead of a calibration's four to six.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence

from securefl.dp.accounting import epsilon
from securefl.dp.calibration import calibrate_noise
from securefl.dp.events import DPEvent
from securefl.errors import ConfigError

__all__ = ["ANCHOR_RATIO", "calibrate_noise_many"]

#: Anchors are calibrated exactly at least every this factor of q.
ANCHOR_RATIO = 1.25
_MAX_RAISES = 4  # then the site is calibrated exactly

_Request = tuple[float, int]


def _event(sigma: float, q: float, steps: int) -> DPEvent:
    return DPEvent(
        noise_multiplier=sigma, sample_rate=q, steps=steps, max_grad_norm=1.0, secure_rng=True
    )


def _anchors(members: list[_Request], ratio: float) -> list[_Request]:
    """The smallest and largest q, and one at least every ``ratio`` of q between them."""
    anchors = [members[0]]
    for previous, current in itertools.pairwise(members):
        if current[0] > anchors[-1][0] * ratio:
            anchors.append(previous if previous != anchors[-1] else current)
    if anchors[-1] != members[-1]:
        anchors.append(members[-1])
    return anchors


def calibrate_noise_many(
    requests: Sequence[tuple[float, int]],
    *,
    target_epsilon: float,
    delta: float,
    accountant: str = "prv",
    tolerance: float = 0.005,
    anchor_ratio: float = ANCHOR_RATIO,
) -> list[float]:
    """One noise multiplier per ``(sample_rate, steps)`` request, each certified within target.

    Every returned σ was evaluated with ``accountant`` on its own request's
    event and gives ε ≤ ``target_epsilon``; anchors are exact calibrations
    (:func:`~securefl.dp.calibrate_noise`), the others are at most about
    ``(1 + tolerance)**2`` above one when the interpolation is good (see the
    module doc).

    Raises:
        ConfigError: ``anchor_ratio`` not above 1, or as
            :func:`~securefl.dp.calibrate_noise`.
    """
    return _calibrate_many(
        requests,
        target_epsilon=target_epsilon,
        delta=delta,
        accountant=accountant,
        tolerance=tolerance,
        anchor_ratio=anchor_ratio,
    )


def _calibrate_many(
    requests: Sequence[tuple[float, int]],
    *,
    target_epsilon: float,
    delta: float,
    accountant: str,
    tolerance: float,
    anchor_ratio: float,
    skew: float = 1.0,
) -> list[float]:
    """:func:`calibrate_noise_many`; ``skew`` scales every interpolated guess (tests only).

    A test passes a skew far below 1 to play an interpolation that is badly
    wrong, and checks the certificate still keeps every site within target.
    """
    if not (math.isfinite(anchor_ratio) and anchor_ratio > 1.0):
        raise ConfigError(f"anchor_ratio must be a number > 1, got {anchor_ratio!r}")

    def exact(request: _Request) -> float:
        return calibrate_noise(
            target_epsilon=target_epsilon,
            delta=delta,
            sample_rate=request[0],
            steps=request[1],
            accountant=accountant,
            tolerance=tolerance,
        )

    def certified(sigma: float, request: _Request) -> float | None:
        for _ in range(_MAX_RAISES):
            spent = epsilon((_event(sigma, *request),), delta=delta, accountant=accountant)
            if spent <= target_epsilon:
                return sigma
            sigma *= 1 + tolerance
        return None

    wanted = [(float(q), int(n)) for q, n in requests]
    groups: dict[float, list[_Request]] = {}
    for request in sorted(set(wanted)):  # by q within each line of equal q · steps
        groups.setdefault(round(request[0] * request[1], 6), []).append(request)
    solved: dict[_Request, float] = {}
    for members in groups.values():
        anchors = _anchors(members, anchor_ratio)
        for anchor in anchors:
            solved[anchor] = exact(anchor)
        logs = [math.log(a[0]) for a in anchors]
        for request in members:
            if request in solved:
                continue
            i = min(max(bisect.bisect_left(logs, math.log(request[0])), 1), len(anchors) - 1)
            (q0, _), (q1, _) = anchors[i - 1], anchors[i]
            w = (math.log(request[0]) - math.log(q0)) / math.log(q1 / q0)
            guess = math.exp(
                (1 - w) * math.log(solved[anchors[i - 1]]) + w * math.log(solved[anchors[i]])
            )
            sigma = certified(guess * skew * (1 + tolerance), request)
            solved[request] = sigma if sigma is not None else exact(request)
    return [solved[request] for request in wanted]
