"""A second, independent evaluation of the RDP bound for records of distributed (Skellam) DP.

Why a second implementation of the same bound: for the Skellam mechanism no
other analysis exists (dp-accounting has no Skellam event, so there is no PLD
to hold it against), so the audit's second opinion can only guard against an
implementation bug, not against the theorem. This module therefore shares no
code with :mod:`securefl.dp`: it works from the record's ``event`` dicts,
computes binomials with ``math.lgamma``, sums with the max-shifted
log-sum-exp below, evaluates the Gaussian events with the closed form
of Mironov, Talwar and Zhang (2019) at integer orders, and converts with
dp-accounting's ``compute_epsilon`` alone. The formulas are those of
docs/distributed_dp_accounting.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

__all__ = ["AUDIT_ORDERS", "rdp_epsilon"]

#: The orders the audit evaluates (the same list as the site's accountant, written out).
AUDIT_ORDERS = tuple(range(2, 65)) + tuple(range(72, 257, 8)) + (320, 384, 448, 512, 640, 768, 1024)

#: ("skellam", mu_total, l1, l2, q, steps) or ("gauss", sigma, q, steps); q = 1 is no sampling.
Part = tuple[object, ...]


def _log_binom(n: int, k: np.ndarray) -> np.ndarray:
    lg = np.vectorize(math.lgamma, otypes=[np.float64])
    out: np.ndarray = math.lgamma(n + 1) - lg(k + 1) - lg(n - k + 1)
    return out


def logsumexp(values: np.ndarray | list[float]) -> float:
    """log Σ exp(values), shifted by the maximum so nothing overflows."""
    arr = np.asarray(values, dtype=np.float64)
    top = float(np.max(arr))
    if not math.isfinite(top):
        return top
    return top + math.log(float(np.sum(np.exp(arr - top))))


def _skellam(alpha: np.ndarray, mu: float, l1: float, l2: float) -> np.ndarray:
    """Agarwal, Kairouz, Liu 2021, Theorem 3.5, with μ the total variance."""
    first = alpha * l2 * l2 / (2.0 * mu)
    second = np.minimum(((2.0 * alpha - 1.0) * l2 * l2 + 6.0 * l1) / (4.0 * mu * mu), 1.5 * l1 / mu)
    out: np.ndarray = first + second
    return out


def _subsample(alpha: int, q: float, curve: np.ndarray) -> float:
    """Zhu & Wang 2019, Theorem 9; ``curve[j]`` is the base RDP at order j + 2."""
    if q >= 1.0:
        return float(curve[alpha - 2])
    j = np.arange(3, alpha + 1, dtype=np.float64)
    parts = [
        (alpha - 1) * math.log1p(-q) + math.log1p((alpha - 1) * q),
        float(_log_binom(alpha, np.array([2.0]))[0])
        + 2 * math.log(q)
        + (alpha - 2) * math.log1p(-q)
        + float(curve[0]),
    ]
    if alpha >= 3:
        rest = (
            math.log(3.0)
            + _log_binom(alpha, j)
            + j * math.log(q)
            + (alpha - j) * math.log1p(-q)
            + (j - 1) * curve[1 : alpha - 1]
        )
        parts.extend(rest.tolist())
    bound = logsumexp(parts) / (alpha - 1)
    return min(bound, float(curve[alpha - 2]))


def _gaussian(alpha: int, sigma: float, q: float) -> float:
    """Exact RDP of the Poisson-subsampled Gaussian at an integer order (Mironov et al. 2019)."""
    if q >= 1.0:
        return alpha / (2.0 * sigma * sigma)
    k = np.arange(0, alpha + 1, dtype=np.float64)
    terms = (
        _log_binom(alpha, k)
        + k * math.log(q)
        + (alpha - k) * math.log1p(-q)
        + (k * k - k) / (2.0 * sigma * sigma)
    )
    return logsumexp(terms) / (alpha - 1)


@lru_cache(maxsize=4096)
def _part_rdp(part: Part) -> tuple[float, ...]:
    if part[0] == "skellam":
        _, mu, l1, l2, q, steps = part
        assert isinstance(mu, float) and isinstance(l1, float) and isinstance(l2, float)
        assert isinstance(q, float) and isinstance(steps, int)
        curve = _skellam(np.arange(2, max(AUDIT_ORDERS) + 1, dtype=np.float64), mu, l1, l2)
        return tuple(steps * _subsample(a, q, curve) for a in AUDIT_ORDERS)
    _, sigma, q, steps = part
    assert isinstance(sigma, float) and isinstance(q, float) and isinstance(steps, int)
    return tuple(steps * _gaussian(a, sigma, q) for a in AUDIT_ORDERS)


def rdp_epsilon(parts: Iterable[Part], delta: float) -> float:
    """ε at ``delta`` of the composed parts, with dp-accounting's RDP-to-(ε, δ) conversion."""
    from dp_accounting.rdp import rdp_privacy_accountant

    total = np.zeros(len(AUDIT_ORDERS))
    for part in parts:
        total += np.asarray(_part_rdp(part))
    if not np.all(np.isfinite(total)):
        return math.inf
    eps, _ = rdp_privacy_accountant.compute_epsilon(list(AUDIT_ORDERS), total.tolist(), delta)
    return max(float(eps), 0.0)
