"""Privacy accounting: DP events in, ε out. Pure functions, no state.

We do not implement accountants; we feed well-kept ones through their public
interfaces:

``"prv"`` (default)
    Opacus's ``PRVAccountant`` (Gopi et al. 2021, numerical composition of
    privacy loss random variables), given the history through its public
    ``load_state_dict``. Tight;
    it reports its own upper bound (estimate + ``eps_error`` = 0.01).
``"rdp"``
    Rényi DP (Mironov 2017; Mironov, Talwar, Zhang 2019) through Opacus's pure
    functions ``compute_rdp`` and ``get_privacy_spent`` with Opacus's default
    orders. Looser, but robust and fast: an upper bound on the others.
``"pld"``
    Google dp-accounting's ``PLDAccountant`` (privacy loss distributions,
    pessimistic estimate, value discretisation 1e-3), fed
    :meth:`DPEvent.to_dp_accounting`. An independent implementation, used to
    cross-check PRV.

Composition of heterogeneous events is exact in all three: the privacy loss of
a sequence of mechanisms depends only on the multiset of mechanisms, so events
with the same (σ, q) are merged into one group and the order does not matter.

Regime guard: when the RDP bound already exceeds :data:`NUMERIC_CUTOFF`
(ε = 50, far beyond any budget a site should run with), ``"prv"`` and
``"pld"`` return the RDP bound instead. Their discretisations become very
slow (minutes) or raise in that regime, and an RDP bound is still a valid
upper bound on ε, so the answer stays conservative. The same fallback applies
if the numerical accountant raises.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from securefl.dp.events import DPEvent
from securefl.errors import ConfigError

__all__ = [
    "ACCOUNTANTS",
    "NUMERIC_CUTOFF",
    "PLD_DISCRETIZATION",
    "PRV_EPS_ERROR",
    "calibrate_noise",
    "epsilon",
    "supports",
]

ACCOUNTANTS = ("prv", "rdp", "pld")

#: Above this RDP ε, ``prv`` and ``pld`` report the RDP bound (see module doc).
NUMERIC_CUTOFF = 50.0
#: Opacus PRV error tolerance on ε; PRV returns estimate + this, an upper bound.
PRV_EPS_ERROR = 0.01
#: dp-accounting PLD value discretisation (pessimistic, so still an upper bound).
PLD_DISCRETIZATION = 1e-3
#: Largest noise multiplier :func:`calibrate_noise` will consider.
MAX_NOISE_MULTIPLIER = 1e4

_Group = tuple[float, float, int]  # (noise_multiplier, sample_rate, total steps)


def supports(accountant: str, event: DPEvent) -> bool:
    """Whether ``accountant`` can bound ``event``.

    Every shipped accountant handles Poisson-sampled (or full-batch) Gaussian
    mechanisms; none handles ``sampling="shuffle"``.
    """
    return accountant in ACCOUNTANTS and event.sampling == "poisson"


def _check_common(accountant: str, delta: float) -> None:
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0.0 < delta < 1.0:
        raise ConfigError(f"delta must be a number in (0, 1), got {delta!r}")


def _groups(events: Iterable[DPEvent], accountant: str) -> tuple[_Group, ...]:
    totals: dict[tuple[float, float], int] = {}
    for event in events:
        if not isinstance(event, DPEvent):
            raise ConfigError(f"expected DPEvent, got {type(event).__name__}")
        if not supports(accountant, event):
            raise ConfigError(
                f"accountant {accountant!r} cannot bound an event with "
                f"sampling={event.sampling!r}; only Poisson sampling is accountable"
            )
        key = (event.noise_multiplier, event.sample_rate)
        totals[key] = totals.get(key, 0) + event.steps
    return tuple(sorted((s, q, n) for (s, q), n in totals.items()))


def epsilon(events: Sequence[DPEvent], *, delta: float, accountant: str = "prv") -> float:
    """ε at ``delta`` of the composition of ``events`` (0.0 for no events).

    Raises:
        ConfigError: unknown accountant, δ outside (0, 1), or an event the
            accountant does not support (fail closed rather than guess).
    """
    _check_common(accountant, delta)
    groups = _groups(events, accountant)
    if not groups:
        return 0.0
    return _epsilon_groups(groups, float(delta), accountant)


@lru_cache(maxsize=8192)
def _epsilon_groups(groups: tuple[_Group, ...], delta: float, accountant: str) -> float:
    # Accountants warn about their own numerics (e.g. log(1 - q) at q = 1, or
    # "optimal order is the largest alpha"); none of it changes the bound.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        rdp_eps = _rdp(groups, delta)
        if accountant == "rdp" or rdp_eps > NUMERIC_CUTOFF:
            return rdp_eps
        try:
            value = _prv(groups, delta) if accountant == "prv" else _pld(groups, delta)
        except (RuntimeError, ValueError, FloatingPointError, OverflowError):
            return rdp_eps
    if math.isnan(value):
        return rdp_eps
    return value


def _rdp(groups: tuple[_Group, ...], delta: float) -> float:
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis import rdp as rdp_analysis

    orders = RDPAccountant.DEFAULT_ALPHAS
    total = sum(
        (rdp_analysis.compute_rdp(q=q, noise_multiplier=s, steps=n, orders=orders))
        for s, q, n in groups
    )
    eps, _ = rdp_analysis.get_privacy_spent(orders=orders, rdp=total, delta=delta)
    return float(eps)


def _prv(groups: tuple[_Group, ...], delta: float) -> float:
    from opacus.accountants import PRVAccountant

    # load_state_dict is the accountant's public way to restore a history of
    # (noise_multiplier, sample_rate, steps); one step() call per step would be
    # equivalent but slow for long ledgers.
    acc = PRVAccountant()
    acc.load_state_dict({"history": [(s, q, n) for s, q, n in groups], "mechanism": "prv"})
    return float(acc.get_epsilon(delta=delta, eps_error=PRV_EPS_ERROR))


def _pld(groups: tuple[_Group, ...], delta: float) -> float:
    import dp_accounting
    from dp_accounting import pld

    acc = pld.PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    for sigma, q, steps in groups:
        inner = dp_accounting.GaussianDpEvent(sigma)
        if q < 1.0:
            inner = dp_accounting.PoissonSampledDpEvent(q, inner)
        acc.compose(dp_accounting.SelfComposedDpEvent(inner, steps))
    return float(acc.get_epsilon(delta))


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
    """The smallest noise multiplier σ keeping ``prior_events + (σ, q, steps)`` ≤ target.

    Bisection on log σ. The returned σ always satisfies the target (it is the
    upper end of the final bracket, whose ε was computed); it is at most a
    factor ``1 + tolerance`` above the smallest such σ, up to the accountant's
    own numerical error. ε is monotone in σ, which is what makes bisection valid.

    Raises:
        ConfigError: invalid arguments, or a budget too small to meet even
            with σ = 1e4 (or already spent by ``prior_events``).
    """
    _check_common(accountant, delta)
    if not (isinstance(target_epsilon, (int, float)) and target_epsilon > 0):
        raise ConfigError(f"target_epsilon must be > 0, got {target_epsilon!r}")
    if not 0.0 < tolerance < 1.0:
        raise ConfigError(f"tolerance must be in (0, 1), got {tolerance!r}")
    probe = DPEvent(  # validates sample_rate and steps, naming the field
        noise_multiplier=1.0,
        sample_rate=sample_rate,
        steps=steps,
        max_grad_norm=1.0,
        secure_rng=False,
    )
    prior = tuple(prior_events)

    def eps_at(sigma: float, acc: str = accountant) -> float:
        event = DPEvent(
            noise_multiplier=sigma,
            sample_rate=probe.sample_rate,
            steps=steps,
            max_grad_norm=1.0,
            secure_rng=False,
        )
        return epsilon((*prior, event), delta=delta, accountant=acc)

    spent = epsilon(prior, delta=delta, accountant=accountant)
    if spent >= target_epsilon:
        raise ConfigError(
            f"privacy budget too small: prior events already spend ε={spent:.4g} "
            f"of the target ε={target_epsilon:.4g}"
        )
    # Bracket with RDP first: it is cheap, and keeps the numerical accountants
    # away from tiny σ where they are slow.
    hi = 1.0
    while eps_at(hi, "rdp") > target_epsilon and hi < MAX_NOISE_MULTIPLIER:
        hi *= 2.0
    while eps_at(hi) > target_epsilon:
        if hi >= MAX_NOISE_MULTIPLIER:
            raise ConfigError(
                f"privacy budget too small: even noise_multiplier={MAX_NOISE_MULTIPLIER:g} "
                f"gives ε above the target {target_epsilon:.4g} at δ={delta:g} "
                f"(q={sample_rate}, steps={steps}, {len(prior)} prior events)"
            )
        hi = min(hi * 2.0, MAX_NOISE_MULTIPLIER)
    lo = hi / 2.0
    while eps_at(lo) <= target_epsilon:
        hi, lo = lo, lo / 2.0
        if lo < 1e-3:
            return hi
    while hi / lo > 1.0 + tolerance:
        mid = math.sqrt(lo * hi)
        if eps_at(mid) <= target_epsilon:
            hi = mid
        else:
            lo = mid
    return hi
