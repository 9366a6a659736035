"""Poisson-subsampled RDP from a base mechanism's RDP curve: the bounds the accountant takes.

Why a bound of our own next to Zhu & Wang's: their general upper bound
(ICML 2019, for any mechanism, integer α) carries a factor 3 on every term
of order γ³ and higher, *without* subtracting the ``1`` those terms hold when
the mechanism leaks nothing. With ε(l) → 0 it therefore tends to
``log(1 + 2 P[Bin(α, γ) >= 3]) / (α − 1)`` and not to 0: a per-step floor
that no amount of noise removes (the paper's "optimal up to an additive
log(3)/(α−1)"). Composed over thousands of steps at a small ε that floor is
what the calibration had to beat, and it asked for a hundred times the
Gaussian's noise at q = 0.01. The bound below vanishes with ε(l), is proved
in docs/distributed_dp_accounting.md (section "The bound"), and is at most
1.5x the Gaussian's σ on the bench grid (``bench/skellam_accounting.py``).

**Setting.** A base mechanism M whose outputs have full support, and which
satisfies ``D_k(M(S ∪ {x}) ‖ M(S)) <= ε(k)`` and ``D_k(M(S) ‖ M(S ∪ {x})) <= ε(k)``
for every integer order 2 <= k <= α (the Skellam bound of Agarwal et al. is
symmetric in this sense). Write ``E_k = exp((k−1) ε(k))`` for k >= 2 and
``E_0 = E_1 = 1``. For Poisson sampling at rate γ < 1 and integer α >= 2:

    (α − 1) ε_γ(α) <= max( log A, min(log B₁, log B₂) )

    A  = Σ_{k=0..α}   C(α, k)   (1−γ)^(α−k)   γ^k E_k
    B₁ = 1 + Σ_{l=2..α} C(α, l) γ^l M_l,
         M_2 = E_2 − 1,  M_l = (E_l − 1) + (E_{l−2} − 1) + (E_2 − 1)  (l >= 3)
    B₂ = Σ_{k=0..α−1} C(α−1, k) (1−γ)^(α−1−k) γ^k E_{k+1}

A bounds the "add" direction (it is the exact binomial expansion of
``E[(1 − γ + γL)^α]``, L the likelihood ratio, with each moment bounded by
ε); B₁ and B₂ bound the "remove" direction, by a Pearson–Vajda expansion and
by the convexity of 1/x respectively. :func:`poisson_subsampled_rdp` reports
the minimum of that, Zhu & Wang's general bound and the unsampled ε(α): each
is a proven upper bound, so their minimum is one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from securefl.errors import ConfigError

__all__ = [
    "add_direction_rdp",
    "poisson_subsampled_rdp",
    "remove_add_rdp",
    "zhu_wang_general_rdp",
]

_Floats = NDArray[np.float64]


@lru_cache(maxsize=2048)
def _log_comb(alpha: int) -> _Floats:
    """log C(α, l) for l = 0..α, from exact integers."""
    return np.array([math.log(math.comb(alpha, k)) for k in range(alpha + 1)])


def _lse(x: _Floats) -> float:
    """log Σ exp(x), shifted by the maximum (``np.logaddexp.reduce`` is far slower)."""
    top = float(np.max(x))
    if not math.isfinite(top):
        return top
    return top + math.log(float(np.sum(np.exp(x - top))))


def _log_expm1(x: _Floats) -> _Floats:
    """log(e^x − 1) for x >= 0, −inf at 0, without overflow for large x."""
    out = np.full(x.shape, -np.inf)
    pos = x > 0
    out[pos] = x[pos] + np.log(-np.expm1(-x[pos]))
    return out


def _checked(
    base: Sequence[float] | _Floats, sample_rate: float, orders: Sequence[int]
) -> tuple[_Floats, float, tuple[int, ...]]:
    alphas = tuple(orders)
    if not alphas or any(
        isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < 2 for a in alphas
    ):
        raise ConfigError(f"orders must be integers >= 2, got {alphas!r}")
    alphas = tuple(int(a) for a in alphas)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)):
        raise ConfigError(f"sample_rate must be a number, got {sample_rate!r}")
    gamma = float(sample_rate)
    if not 0 < gamma <= 1:
        raise ConfigError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    eps = np.asarray(base, dtype=np.float64)
    top = max(alphas)
    if eps.shape != (top - 1,) or not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ConfigError(
            f"base must hold finite RDP values >= 0 for every order 2..{top} "
            f"({top - 1} values), got shape {eps.shape}"
        )
    return eps, gamma, alphas


def zhu_wang_general_rdp(
    base: Sequence[float] | _Floats, *, sample_rate: float, orders: Sequence[int]
) -> _Floats:
    """Zhu & Wang 2019's general upper bound (their Theorem 9), nothing else.

    ``base[l - 2]`` is ε(l) for every integer l from 2 to ``max(orders)``.
    At γ = 1 it is the unsampled curve.
    """
    eps, gamma, alphas = _checked(base, sample_rate, orders)
    if gamma == 1.0:
        return np.array([eps[a - 2] for a in alphas])
    # Written as 1 + Σ_{l>=2} C(α,l) γ^l (1−γ)^(α−l) (w_l E_l − 1), w_2 = 1, w_l = 3
    # (the binomial weights sum to 1), so tiny rates lose no precision to 1 + x.
    top = max(alphas)
    log_e = np.concatenate(([0.0, 0.0], np.arange(1, top) * eps))
    weighted = np.log(3.0) + log_e + np.log1p(-np.exp(-log_e) / 3.0)
    weighted[2] = _log_expm1(log_e[2:3])[0]
    log_g, log_1g = math.log(gamma), math.log1p(-gamma)
    out = np.empty(len(alphas))
    for i, a in enumerate(alphas):
        ls = np.arange(2, a + 1)
        terms = _log_comb(a)[2:] + ls * log_g + (a - ls) * log_1g + weighted[2 : a + 1]
        out[i] = float(np.logaddexp(0.0, _lse(terms))) / (a - 1)
    return out


def add_direction_rdp(
    base: Sequence[float] | _Floats, *, sample_rate: float, orders: Sequence[int]
) -> _Floats:
    """``log(A) / (α − 1)`` alone: the "add" direction, exact when every ε(k) is.

    On the Gaussian's curve ``k / (2σ²)`` it is the exact RDP of the sampled
    Gaussian at integer orders (Mironov, Talwar, Zhang 2019), which the known
    answers check; it is not an upper bound on its own (the "remove"
    direction is not in it).
    """
    return _remove_add(base, sample_rate, orders, add_only=True)


def remove_add_rdp(
    base: Sequence[float] | _Floats, *, sample_rate: float, orders: Sequence[int]
) -> _Floats:
    """``max(log A, min(log B₁, log B₂)) / (α − 1)`` of the module doc, for γ < 1.

    At γ = 1 the unsampled curve (A = E_α there, and both directions are the
    base mechanism's own).
    """
    return _remove_add(base, sample_rate, orders, add_only=False)


def _remove_add(
    base: Sequence[float] | _Floats, sample_rate: float, orders: Sequence[int], *, add_only: bool
) -> _Floats:
    eps, gamma, alphas = _checked(base, sample_rate, orders)
    if gamma == 1.0:
        return np.array([eps[a - 2] for a in alphas])
    top = max(alphas)
    log_e = np.concatenate(([0.0, 0.0], np.arange(1, top) * eps))  # log E_k, k = 0..top
    em1 = _log_expm1(log_e)  # log(E_k − 1): −inf for k = 0, 1
    log_m = np.full(top + 1, -np.inf)  # log M_l, l = 2..top
    log_m[2] = em1[2]
    if top >= 3:
        ls = np.arange(3, top + 1)
        log_m[3:] = np.logaddexp(np.logaddexp(em1[ls], em1[ls - 2]), em1[2])
    # A and B₂ are binomial means of E_k; written as 1 + Σ C γ^k (1−γ)^(·) (E_k − 1)
    # (the weights sum to 1), so tiny rates lose no precision to 1 + x.
    log_g, log_1g = math.log(gamma), math.log1p(-gamma)
    out = np.empty(len(alphas))
    for i, a in enumerate(alphas):
        ks = np.arange(2, a + 1)
        add = _lse(_log_comb(a)[2:] + ks * log_g + (a - ks) * log_1g + em1[2 : a + 1])
        if add_only:
            out[i] = float(np.logaddexp(0.0, add)) / (a - 1)
            continue
        b1 = _lse(_log_comb(a)[2:] + ks * log_g + log_m[2 : a + 1])
        js = np.arange(1, a)
        b2 = _lse(_log_comb(a - 1)[1:] + js * log_g + (a - 1 - js) * log_1g + em1[2 : a + 1])
        # log(1 + x) is increasing, so max/min commute with it.
        out[i] = float(np.logaddexp(0.0, max(add, min(b1, b2)))) / (a - 1)
    return out


def poisson_subsampled_rdp(
    base: Sequence[float] | _Floats, *, sample_rate: float, orders: Sequence[int]
) -> _Floats:
    """The RDP the accountant charges: the least of the three proven bounds at each order.

    ``base[l - 2]`` is the base mechanism's RDP at order ``l`` for every
    integer l from 2 up to ``max(orders)`` (both neighbouring directions).
    Returns the subsampled RDP at ``orders``; at rate 1 exactly the base curve.
    """
    eps, gamma, alphas = _checked(base, sample_rate, orders)
    unsampled = np.array([eps[a - 2] for a in alphas])
    if gamma == 1.0:
        return unsampled
    general = zhu_wang_general_rdp(eps, sample_rate=gamma, orders=alphas)
    ours = remove_add_rdp(eps, sample_rate=gamma, orders=alphas)
    result: _Floats = np.minimum(np.minimum(general, ours), unsampled)
    return result
