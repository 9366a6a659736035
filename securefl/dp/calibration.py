"""Noise calibration: the smallest noise multiplier σ that keeps ε within a target.

Why a separate module: every ε evaluation of the numerical accountants costs
0.05-0.5 s, and a plain bisection needs a dozen of them per distinct sample
rate, which made calibration most of ``simulate``'s start-up and of ``plan``.
So the search spends its accountant calls where they count:

1. **Bracket** with Rényi DP at integer orders only
   (:func:`~securefl.dp.accounting.int_order_rdp`, milliseconds per call). A
   minimum over fewer orders is above every accountant's ε, so the σ it needs
   is a safe starting point, and usually within 10 % of the answer.
2. **Predict** the crossing of the real accountant from there with one
   power-law step (ε is close to a power of σ; the slope comes from the
   integer-order bound), refine it once with the accountant's own slope,
   and evaluate the accountant just above and just below the prediction.
   Usually that is the whole search: four accountant calls. When the
   prediction misses, Illinois regula falsi on (log σ, log ε) finishes from
   the points already evaluated.
3. The returned σ was evaluated with the accountant itself
   (:func:`~securefl.dp.accounting.epsilon`) and meets the target, and
   σ / (1 + tolerance) was evaluated to miss it.

The PRV accountant itself was also made about ten times faster (its safe
domain is sized with integer orders, see :mod:`securefl.dp.accounting`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from securefl.dp.accounting import ACCOUNTANTS, epsilon, int_order_rdp
from securefl.dp.events import DPEvent
from securefl.errors import ConfigError

__all__ = ["MAX_NOISE_MULTIPLIER", "calibrate_noise", "site_calibration_request"]

#: Largest noise multiplier :func:`calibrate_noise` will consider.
MAX_NOISE_MULTIPLIER = 1e4
#: Smallest: below it ε is astronomically large for any useful setting.
_MIN_NOISE_MULTIPLIER = 1e-2

_Group = tuple[float, float, int]  # (noise_multiplier, sample_rate, steps)


def _event(sigma: float, q: float, steps: int) -> DPEvent:
    return DPEvent(
        noise_multiplier=sigma, sample_rate=q, steps=steps, max_grad_norm=1.0, secure_rng=True
    )


def _groups(events: Sequence[DPEvent], sigma: float, q: float, steps: int) -> tuple[_Group, ...]:
    totals: dict[tuple[float, float], int] = {(sigma, q): steps}
    for e in events:
        key = (e.noise_multiplier, e.sample_rate)
        totals[key] = totals.get(key, 0) + e.steps
    return tuple(sorted((s, qq, n) for (s, qq), n in totals.items()))


def _log(value: float) -> float:
    # ε is clamped at 0 (a huge δ); keep the logarithm finite.
    return math.log(max(value, 1e-300))


def _solve(
    f: Callable[[float], float], target: float, lo: float, hi: float, rel: float
) -> tuple[float, float]:
    """Shrink [lo, hi] to a factor 1 + ``rel``, keeping f(lo) > target >= f(hi).

    f decreases. Illinois regula falsi on (log σ, log f), where ε is close to
    a power law of σ; every returned end was evaluated.
    """
    log_t = math.log(target)
    glo, ghi = _log(f(lo)) - log_t, _log(f(hi)) - log_t
    side = 0
    while hi / lo > 1 + rel:
        x = (math.log(lo) * ghi - math.log(hi) * glo) / (ghi - glo)
        # Aim just past the estimate, so the bracket closes from both sides.
        span = math.log(hi / lo)
        x += -(rel / 3) if side == 1 else (rel / 3)
        x = min(max(x, math.log(lo) + 0.01 * span), math.log(hi) - 0.01 * span)
        mid = math.exp(x)
        g = _log(f(mid)) - log_t
        if g > 0:
            lo, glo = mid, g
            if side == -1:
                ghi /= 2
            side = -1
        else:
            hi, ghi = mid, g
            if side == 1:
                glo /= 2
            side = 1
    return lo, hi


def _locate(
    f: Callable[[float], float],
    rough: Callable[[float], float],
    target: float,
    start: float,
    tolerance: float,
) -> tuple[float, float] | None:
    """A bracket [lo, hi] of f's crossing, usually within 1 + ``tolerance`` in four calls.

    From ``start`` (the integer-order RDP root, where f is usually just below
    the target), one power-law step with the slope of ``rough``, then one
    secant step with f's own slope, predict the crossing; f is then evaluated
    just above and just below the prediction.
    Falls back to widening by 1.25 when the prediction misses; None when no
    σ up to the maximum meets the target.
    """
    seen: dict[float, float] = {}

    def ev(sigma: float) -> float:
        seen[sigma] = f(sigma)
        return seen[sigma]

    log_t = math.log(target)
    if 0 < ev(start) <= target:
        slope = (_log(rough(start * 1.05)) - _log(rough(start))) / math.log(1.05)
        if slope < 0:
            first = start * math.exp((log_t - math.log(seen[start])) / slope)
            # A second step with the accountant's own slope between the two points.
            if first < start and ev(first) != seen[start]:
                slope = (_log(seen[first]) - _log(seen[start])) / math.log(first / start)
            if slope < 0:
                guess = first * math.exp((log_t - _log(seen[first])) / slope)
                hi = min(guess * (1 + tolerance / 2), start)
                ev(hi)
                ev(hi / (1 + tolerance))
    above = [s for s, e in seen.items() if e > target]
    below = [s for s, e in seen.items() if e <= target]
    if above and below and max(above) < min(below):
        return max(above), min(below)
    return _bracket(f, target, min(below) if below else start, 1.25)


def _bracket(
    f: Callable[[float], float], target: float, start: float, factor: float
) -> tuple[float, float] | None:
    """[lo, hi] around the crossing, from ``start``; None if f(MAX) > target."""
    hi = start
    while f(hi) > target:
        if hi >= MAX_NOISE_MULTIPLIER:
            return None
        hi = min(hi * factor, MAX_NOISE_MULTIPLIER)
    lo = hi / factor
    while f(lo) <= target:
        if lo < _MIN_NOISE_MULTIPLIER:
            return lo, lo
        hi, lo = lo, lo / factor
    return lo, hi


def site_calibration_request(batches: int, *, rounds: int, epochs: int) -> tuple[float, int]:
    """The (sample rate, steps) a site with ``batches`` batches calibrates its σ for.

    Poisson sampling at q = 1/batches; every planned round runs ``epochs``
    epochs of ``batches`` steps. One definition, so a σ planned for many
    sites at once is certified on exactly the event each site then runs.
    """
    return 1.0 / batches, rounds * epochs * batches


def calibrate_noise(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "prv",
    prior_events: Sequence[DPEvent] = (),
    tolerance: float = 0.005,
) -> float:
    """The smallest noise multiplier σ keeping ``prior_events + (σ, q, steps)`` <= target.

    The returned σ always meets the target under ``accountant`` (its ε was
    computed with :func:`~securefl.dp.accounting.epsilon`), and
    σ / (1 + ``tolerance``) was computed to miss it, so σ is at most that
    factor above the smallest σ that meets it (ε decreases in σ). See the
    module doc for how the search stays fast.

    Raises:
        ConfigError: invalid arguments, or a budget too small to meet even
            with σ = 1e4 (or already spent by ``prior_events``).
    """
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0.0 < delta < 1.0:
        raise ConfigError(f"delta must be a number in (0, 1), got {delta!r}")
    if not (
        isinstance(target_epsilon, (int, float))
        and not isinstance(target_epsilon, bool)
        and math.isfinite(target_epsilon)
        and target_epsilon > 0
    ):
        raise ConfigError(f"target_epsilon must be a finite number > 0, got {target_epsilon!r}")
    if not 0.0 < tolerance < 1.0:
        raise ConfigError(f"tolerance must be in (0, 1), got {tolerance!r}")
    q = _event(1.0, sample_rate, steps).sample_rate  # validates q and steps, naming the field
    prior = tuple(prior_events)
    delta = float(delta)

    def real(sigma: float) -> float:
        return epsilon((*prior, _event(sigma, q, steps)), delta=delta, accountant=accountant)

    spent = epsilon(prior, delta=delta, accountant=accountant)
    if spent >= target_epsilon:
        raise ConfigError(
            f"privacy budget too small: prior events already spend ε={spent:.4g} "
            f"of the target ε={target_epsilon:.4g}"
        )
    too_small = ConfigError(
        f"privacy budget too small: even noise_multiplier={MAX_NOISE_MULTIPLIER:g} "
        f"gives ε above the target {target_epsilon:.4g} at δ={delta:g} "
        f"(q={sample_rate}, steps={steps}, {len(prior)} prior events)"
    )
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")

        # 1. Bracket with the integer-order RDP bound: milliseconds per call.
        def rough(sigma: float) -> float:
            return int_order_rdp(_groups(prior, sigma, q, steps), delta)

        found = _bracket(rough, target_epsilon, 1.0, 2.0)
        start = (
            MAX_NOISE_MULTIPLIER
            if found is None
            else _solve(rough, target_epsilon, *found, tolerance)[1]
        )
        # 2. Locate and certify with the accountant itself.
        found = _locate(real, rough, target_epsilon, start, tolerance)
        if found is None:
            raise too_small
        lo, hi = found
        if hi / lo > (1 + tolerance) * (1 + 1e-9):
            lo, hi = _solve(real, target_epsilon, lo, hi, tolerance)
        return hi
