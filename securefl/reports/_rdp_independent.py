"""A second, independent evaluation of the RDP bound for records of distributed (Skellam) DP.

Why a second implementation of the same bound: for the Skellam mechanism no
other analysis exists (dp-accounting has no Skellam event, so there is no PLD
to hold it against), so the audit's second opinion can only guard against an
implementation bug, not against the theorem. This module therefore shares no
code with :mod:`securefl.dp`: it works from the record's ``event`` dicts,
computes binomials with ``math.lgamma``, sums with the max-shifted
log-sum-exp below, writes each subsampling bound term by term from
docs/distributed_dp_accounting.md (Zhu & Wang's general bound, the add/remove
bound proved there, the unsampled curve; the least of the three), evaluates
the Gaussian events with the closed form of Mironov, Talwar and Zhang (2019)
at integer orders, and converts with dp-accounting's ``compute_epsilon``
alone.
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
    if not math.isfinite(top):  # all −inf (an empty sum), or an overflow to +inf
        return top
    return top + math.log(float(np.sum(np.exp(arr - top))))


def _skellam(alpha: np.ndarray, mu: float, l1: float, l2: float) -> np.ndarray:
    """Agarwal, Kairouz, Liu 2021, Theorem 3.5, with μ the total variance."""
    first = alpha * l2 * l2 / (2.0 * mu)
    second = np.minimum(((2.0 * alpha - 1.0) * l2 * l2 + 6.0 * l1) / (4.0 * mu * mu), 1.5 * l1 / mu)
    out: np.ndarray = first + second
    return out


def _minus_one(log_x: float) -> float:
    """log(x − 1) from log x >= 0; −inf when x = 1."""
    if log_x <= 0.0:
        return -math.inf
    return log_x + math.log(-math.expm1(-log_x))


def _one_plus(log_x: float) -> float:
    """log(1 + x) from log x, accurate when x is tiny."""
    return math.log1p(math.exp(log_x)) if log_x < 30.0 else log_x + math.log1p(math.exp(-log_x))


def _general(alpha: int, q: float, curve: np.ndarray) -> float:
    """Zhu & Wang 2019, Theorem 9; ``curve[j]`` is the base RDP at order j + 2.

    As 1 + Σ_{l>=2} C(α,l) q^l (1−q)^(α−l) (w_l e^((l−1)ε(l)) − 1), w_2 = 1,
    w_l = 3 otherwise: the head (1−q)^(α−1)(αq − q + 1) is the binomial mass at
    0 and 1, so the masses sum to 1 and tiny q lose nothing to rounding.
    """
    parts = []
    for ell in range(2, alpha + 1):
        log_e = (ell - 1) * float(curve[ell - 2])
        if ell == 2:
            gap = _minus_one(log_e)
        else:
            gap = math.log(3.0) + log_e + math.log1p(-math.exp(-log_e) / 3.0)
        parts.append(
            math.lgamma(alpha + 1)
            - math.lgamma(ell + 1)
            - math.lgamma(alpha - ell + 1)
            + ell * math.log(q)
            + (alpha - ell) * math.log1p(-q)
            + gap
        )
    return _one_plus(logsumexp(parts)) / (alpha - 1)


def _add_remove(alpha: int, q: float, curve: np.ndarray) -> float:
    """max(log A, min(log B1, log B2)) / (α − 1) of docs/distributed_dp_accounting.md.

    Each of A, B1, B2 is 1 + a sum of non-negative terms (E_0 = E_1 = 1 and
    the binomial masses sum to 1), computed as such.
    """
    lq, l1q = math.log(q), math.log1p(-q)
    gaps = [-math.inf, -math.inf] + [
        _minus_one((k - 1) * float(curve[k - 2])) for k in range(2, alpha + 1)
    ]  # log(E_k − 1)
    k = np.arange(2, alpha + 1, dtype=np.float64)
    binom = _log_binom(alpha, k)
    gap_arr = np.array(gaps[2:])
    log_a = logsumexp(binom + k * lq + (alpha - k) * l1q + gap_arr)
    pearson = [gaps[2]] + [
        logsumexp([gaps[ell], gaps[ell - 2], gaps[2]]) for ell in range(3, alpha + 1)
    ]  # log M_l
    log_b1 = logsumexp(binom + k * lq + np.array(pearson))
    j = np.arange(1, alpha, dtype=np.float64)
    log_b2 = logsumexp(_log_binom(alpha - 1, j) + j * lq + (alpha - 1 - j) * l1q + gap_arr)
    return _one_plus(max(log_a, min(log_b1, log_b2))) / (alpha - 1)


def _subsample(alpha: int, q: float, curve: np.ndarray) -> float:
    """The least of the general bound, the add/remove bound and the unsampled ε(α)."""
    if q >= 1.0:
        return float(curve[alpha - 2])
    return min(_general(alpha, q, curve), _add_remove(alpha, q, curve), float(curve[alpha - 2]))


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
