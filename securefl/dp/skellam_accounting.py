"""Rényi DP of the (distributed) Skellam mechanism, with Poisson subsampling.

Why our own maths here, when the rest of securefl feeds well-kept
accountants: dp-accounting (0.6) has no Skellam event, and its RDP accountant
subsamples only Gaussians; Opacus has neither. So the bounds the distributed
mechanism needs are implemented here, from the papers and from the proof in
docs/distributed_dp_accounting.md, with known-answer vectors
(``tests/vectors/dp_skellam_accounting.json``, computed by an independent
generator at 60 digits), checks against the exact Rényi divergence of
shifted Skellam pmfs, and the conversion to (ε, δ) left to the well-kept
libraries.

**The mechanism.** Every coordinate of an integer vector gets independent
Skellam noise ``Poisson(μ/2) − Poisson(μ/2)``: mean 0, variance ``μ``. Sums
of independent Skellams are Skellam with the summed variance, so sites that
each add a share of variance ``μ_total / k`` give, once ``k`` of them are
summed, the Skellam mechanism with variance ``μ_total``.

**Base RDP** (Agarwal, Kairouz, Liu 2021, *The Skellam Mechanism for
Differentially Private Federated Learning*, Theorem 3.5, written in terms of
the variance μ as in the authors' reference code): for an integer order
α ≥ 2 and a query whose neighbouring outputs differ by an integer vector of
L1 norm at most Δ₁ and L2 norm at most Δ₂,

    ε(α) ≤ α Δ₂² / (2μ) + min( ((2α − 1) Δ₂² + 6 Δ₁) / (4μ²),  3 Δ₁ / (2μ) ).

The first term is the Gaussian mechanism's RDP at standard deviation √μ; the
second vanishes as μ grows (``tests/dp/test_dp_skellam.py`` checks both).

**Poisson subsampling** (:mod:`securefl.dp.skellam_subsampling`): at each
order the least of three proven upper bounds, each needing only the base
curve: Zhu & Wang 2019's general bound (*Poisson Subsampled Rényi
Differential Privacy*, Theorem 9), our add/remove bound (proved in
docs/distributed_dp_accounting.md), and the unsubsampled ε(α) (subsampling
never hurts: Rényi divergence is jointly quasi-convex), so at γ = 1 the
curve is the base curve exactly. Zhu & Wang's bound alone has a per-step
floor that noise cannot remove (the factor 3 on its terms of order γ³ and up),
which made the distributed model need ~100x the Gaussian's noise at q = 0.01;
the add/remove bound vanishes with the noise. Everything is evaluated in log
space with exact binomials (``math.comb`` on integers), so large orders and
tiny rates neither overflow nor underflow.

**Conversion to (ε, δ)** is the one :mod:`securefl.dp.accounting` uses for
RDP: Opacus's ``get_privacy_spent`` and dp-accounting's ``compute_epsilon``
(both Balle et al. 2020, Proposition 12), taking the larger.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from securefl.config import check_delta
from securefl.dp.skellam_subsampling import poisson_subsampled_rdp, zhu_wang_general_rdp
from securefl.errors import ConfigError

__all__ = [
    "MAX_MU",
    "ORDERS",
    "SkellamGroup",
    "calibrate_skellam_mu",
    "composed_epsilon",
    "poisson_subsampled_rdp",
    "rdp_to_epsilon",
    "skellam_epsilon",
    "skellam_rdp",
    "skellam_subsampled_rdp",
    "zhu_wang_general_rdp",
]

#: Integer Rényi orders the accountant minimises over: dense where small ε
#: and heavy subsampling put the optimum, sparser above.
ORDERS: tuple[int, ...] = (
    *range(2, 65),
    *range(72, 257, 8),
    320,
    384,
    448,
    512,
    640,
    768,
    1024,
)

#: Largest total variance :func:`calibrate_skellam_mu` will consider.
MAX_MU = 1e24

_Floats = NDArray[np.float64]

#: (mu_total, l1_sensitivity, l2_sensitivity, sample_rate, steps) of merged Skellam events.
SkellamGroup = tuple[float, float, float, float, int]


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {type(value).__name__}")
    try:
        out = float(value)
    except OverflowError:
        raise ConfigError(f"{name} is too large to be a float") from None
    if not (math.isfinite(out) and out > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return out


def _rate(value: object) -> float:
    q = _positive("sample_rate", value)
    if q > 1:
        raise ConfigError(f"sample_rate must be in (0, 1], got {value!r}")
    return q


def _orders(orders: Sequence[int]) -> tuple[int, ...]:
    out = tuple(orders)
    if not out:
        raise ConfigError("orders must not be empty")
    for a in out:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < 2:
            raise ConfigError(
                f"orders must be integers >= 2 (both bounds hold for integer orders), got {a!r}"
            )
    return tuple(int(a) for a in out)


def skellam_rdp(
    orders: Sequence[int], *, mu: float, l1_sensitivity: float, l2_sensitivity: float
) -> _Floats:
    """ε(α) of the Skellam mechanism with total variance ``mu`` at each order (see module doc).

    ``l1_sensitivity`` and ``l2_sensitivity`` are in the integer units the noise
    is added in. Raises ConfigError for a non-positive or non-finite parameter
    or an order that is not an integer >= 2.
    """
    alphas = np.asarray(_orders(orders), dtype=np.float64)
    m = _positive("mu", mu)
    d1 = _positive("l1_sensitivity", l1_sensitivity)
    d2sq = _positive("l2_sensitivity", l2_sensitivity) ** 2
    extra = np.minimum(((2 * alphas - 1) * d2sq + 6 * d1) / (4 * m * m), 3 * d1 / (2 * m))
    out: _Floats = alphas * d2sq / (2 * m) + extra
    return out


def skellam_subsampled_rdp(
    orders: Sequence[int],
    *,
    mu: float,
    l1_sensitivity: float,
    l2_sensitivity: float,
    sample_rate: float,
) -> _Floats:
    """RDP of one Skellam release on a Poisson sample at rate ``sample_rate``."""
    alphas = _orders(orders)
    base = skellam_rdp(
        range(2, max(alphas) + 1),
        mu=mu,
        l1_sensitivity=l1_sensitivity,
        l2_sensitivity=l2_sensitivity,
    )
    return poisson_subsampled_rdp(base, sample_rate=sample_rate, orders=alphas)


def rdp_to_epsilon(orders: Sequence[int], rdp: Sequence[float] | _Floats, delta: float) -> float:
    """ε at ``delta`` from an RDP curve, by dp-accounting's conversion; never below 0.

    dp-accounting's conversion is Balle et al. 2020, Prop. 12, minimised
    over the orders (the formula Opacus's ``get_privacy_spent`` applies too),
    plus a valid shortcut: ε = 0 when δ² ≥ 1 − e^(−RDP), since the RDP bounds
    the KL divergence. Only dp-accounting's is called because it needs no
    torch: the coordinator's server plans distributed rounds and must never
    load torch. The shortcut matters only at astronomically large noise;
    :func:`calibrate_skellam_mu` never goes past :data:`MAX_MU`.
    """
    import warnings

    from dp_accounting.rdp import rdp_privacy_accountant

    from securefl._quiet import quiet_logger

    alphas = _orders(orders)
    values = np.asarray(rdp, dtype=np.float64)
    if values.shape != (len(alphas),) or np.any(np.isnan(values)):
        raise ConfigError("rdp must hold one number per order")
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
        raise ConfigError(f"delta must be a number in (0, 1), got {delta!r}")
    with warnings.catch_warnings(), quiet_logger():
        warnings.simplefilter("ignore")
        eps, _ = rdp_privacy_accountant.compute_epsilon(list(alphas), list(values), float(delta))
    return max(float(eps), 0.0)


def skellam_epsilon(
    *,
    mu: float,
    l1_sensitivity: float,
    l2_sensitivity: float,
    sample_rate: float,
    steps: int,
    delta: float,
    orders: Sequence[int] = ORDERS,
) -> float:
    """ε after ``steps`` subsampled Skellam releases, at ``delta``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be an integer >= 1, got {steps!r}")
    curve = skellam_subsampled_rdp(
        orders,
        mu=mu,
        l1_sensitivity=l1_sensitivity,
        l2_sensitivity=l2_sensitivity,
        sample_rate=sample_rate,
    )
    return rdp_to_epsilon(orders, curve * steps, delta)


def calibrate_skellam_mu(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    l1_sensitivity: float,
    l2_sensitivity: float,
    tolerance: float = 0.005,
) -> float:
    """The smallest total variance μ_total (within 1 + ``tolerance``) reaching ``target_epsilon``.

    The returned μ was evaluated to meet the target, and μ / (1 + tolerance)
    to miss it (ε decreases in μ: every term of the bound does). Raises
    ConfigError for bad arguments, or when even :data:`MAX_MU` misses.
    """
    target = _positive("target_epsilon", target_epsilon)
    check_delta(delta)
    l1 = _positive("l1_sensitivity", l1_sensitivity)
    l2 = _positive("l2_sensitivity", l2_sensitivity)
    if isinstance(tolerance, bool) or not isinstance(tolerance, float) or not 0 < tolerance < 1:
        raise ConfigError(f"tolerance must be in (0, 1), got {tolerance!r}")

    def eps(mu: float) -> float:
        return skellam_epsilon(
            mu=mu,
            l1_sensitivity=l1,
            l2_sensitivity=l2,
            sample_rate=sample_rate,
            steps=steps,
            delta=delta,
        )

    # The Gaussian's variance for a single full-batch release is a natural start.
    hi = min(max(l2**2 * 2 * math.log(1.25 / delta) / target**2, 1e-6), MAX_MU)
    while eps(hi) > target:
        if hi >= MAX_MU:
            raise ConfigError(
                f"privacy budget too small: even mu_total={MAX_MU:g} gives ε above "
                f"{target:.4g} at δ={delta:g} (q={sample_rate}, steps={steps})"
            )
        hi = min(hi * 4, MAX_MU)
    lo = hi / 4
    while eps(lo) <= target:
        hi, lo = lo, lo / 4
    while hi / lo > 1 + tolerance:
        mid = math.sqrt(lo * hi)
        if eps(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi


@lru_cache(maxsize=1024)
def _step_curve(mu: float, l1: float, l2: float, q: float) -> tuple[float, ...]:
    """One step's subsampled curve at :data:`ORDERS`, cached: a ledger asks again each round."""
    curve = skellam_subsampled_rdp(
        ORDERS, mu=mu, l1_sensitivity=l1, l2_sensitivity=l2, sample_rate=q
    )
    return tuple(float(x) for x in curve)


def composed_epsilon(
    skellam: Sequence[SkellamGroup],
    gaussian: Sequence[tuple[float, float, int]] = (),
    *,
    delta: float,
) -> float:
    """ε of Skellam groups composed with Poisson-subsampled Gaussian ``(σ, q, steps)`` groups.

    RDP adds under composition, so both are evaluated at :data:`ORDERS`: the
    Skellam curves here, the Gaussian ones with Opacus's ``compute_rdp``
    (exact at integer orders, Mironov, Talwar, Zhang 2019).
    """
    total = np.zeros(len(ORDERS))
    for mu, l1, l2, q, steps in skellam:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"steps must be an integer >= 1, got {steps!r}")
        total += steps * np.asarray(_step_curve(mu, l1, l2, q))
    if gaussian:
        import warnings

        from opacus.accountants.analysis import rdp as rdp_analysis

        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for sigma, q, steps in gaussian:
                total += np.asarray(
                    rdp_analysis.compute_rdp(
                        q=q, noise_multiplier=sigma, steps=steps, orders=list(ORDERS)
                    ),
                    dtype=np.float64,
                )
    return rdp_to_epsilon(ORDERS, total, delta)
