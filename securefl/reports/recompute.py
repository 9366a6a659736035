"""Recompute ε from records alone, with two accountants that share no code.

Why two: the ε a site claims comes from securefl's accountant module. If that
module had a bug, checking a claim with the same module would agree with the
bug. So every claim is also recomputed here with Google's dp-accounting PLD
accountant, built directly from the record's event fields with the mapping
documented in docs/records.md, without going through :mod:`securefl.dp`.

Records of distributed DP (``kind="skellam"``) have no dp-accounting event:
for a chain holding one, the independent recomputation is a second
implementation of the Skellam RDP bound (:mod:`._rdp_independent`), which
shares no code with :mod:`securefl.dp`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from securefl._quiet import quiet_logger
from securefl.dp.events import DPEvent
from securefl.errors import SecureFLError

__all__ = [
    "PLD_DISCRETIZATION",
    "PLD_RELATIVE_DISCRETIZATION",
    "independent_epsilon",
    "independent_pld_epsilon",
    "securefl_epsilon",
]

#: Largest value discretization of the PLD accountant. The estimate is
#: pessimistic (an upper bound), but at a fixed 1e-3 its excess does not shrink
#: with ε: it overstated ε = 0.152 as 0.187. So the interval is also at most
#: this fraction of a rough ε (dp-accounting's RDP bound, which is above it),
#: which keeps it within 2 % of a fine grid, and never below 1e-5.
PLD_DISCRETIZATION = 1e-3
PLD_RELATIVE_DISCRETIZATION = 5e-4
_PLD_MIN_DISCRETIZATION = 1e-5

# (kind, sampling, noise_multiplier, sample_rate, steps) of consecutive equal events merged.
_Run = tuple[str, str, float, float, int]
#: The Skellam fields of a distributed-DP event, in this order.
_SKELLAM_FIELDS = ("mu_total", "l1_sensitivity", "l2_sensitivity", "shares")
# (mu_total, l1, l2, shares, sample_rate, sampling, steps): one merged Skellam run.
_SkRun = tuple[float, float, float, int, float, str, int]


def _runs(events: Sequence[dict[str, Any]]) -> tuple[_Run, ...]:
    """Merge consecutive events with equal parameters: composing k equal
    mechanisms s₁, …, s_k times is one mechanism composed Σsᵢ times, and the
    PLD accountant is much faster on one self-composition than on many."""
    runs: list[_Run] = []
    for ev in events:
        key = (ev["kind"], ev["sampling"], float(ev["noise_multiplier"]), float(ev["sample_rate"]))
        if runs and runs[-1][:4] == key:
            runs[-1] = (*key, runs[-1][4] + int(ev["steps"]))
        else:
            runs.append((*key, int(ev["steps"])))
    return tuple(runs)


def _split(events: Sequence[dict[str, Any]]) -> tuple[tuple[_Run, ...], tuple[_SkRun, ...]]:
    """Gaussian runs and Skellam runs (each merged where consecutive and equal)."""
    gaussian = _runs([ev for ev in events if ev["kind"] != "skellam"])
    skellam: list[_SkRun] = []
    for ev in events:
        if ev["kind"] != "skellam":
            continue
        mu, l1, l2 = (float(ev[name]) for name in _SKELLAM_FIELDS[:3])
        key = (mu, l1, l2, int(ev["shares"]), float(ev["sample_rate"]), str(ev["sampling"]))
        if skellam and skellam[-1][:6] == key:
            skellam[-1] = (*key, skellam[-1][6] + int(ev["steps"]))
        else:
            skellam.append((*key, int(ev["steps"])))
    return gaussian, tuple(skellam)


#: What an accountant may raise on an event it cannot bound (steps = 10**30 overflows
#: inside dp_accounting): no finite ε can then be vouched for, which is a finding
#: (ε = ∞, the claim fails), never a crash of the whole audit.
_UNACCOUNTABLE = (ArithmeticError, ValueError, SecureFLError)


@lru_cache(maxsize=4096)
def _pld(runs: tuple[_Run, ...], delta: float, discretization: float | None) -> float:
    try:
        return _pld_unguarded(runs, delta, discretization)
    except _UNACCOUNTABLE:
        return math.inf


def _pld_unguarded(runs: tuple[_Run, ...], delta: float, discretization: float | None) -> float:
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant
    from dp_accounting.rdp import rdp_privacy_accountant

    parts = []
    for kind, sampling, sigma, q, steps in runs:
        if sampling != "poisson":
            return math.inf  # no accountant bounds it: fail closed
        inner: Any = dp_accounting.GaussianDpEvent(sigma)
        if kind == "dpsgd":
            inner = dp_accounting.PoissonSampledDpEvent(q, inner)
        parts.append(dp_accounting.SelfComposedDpEvent(inner, steps))
    event = parts[0] if len(parts) == 1 else dp_accounting.ComposedDpEvent(parts)
    if discretization is None:
        rdp = rdp_privacy_accountant.RdpAccountant()
        with quiet_logger():  # dropped fractional orders only make this bound larger
            rdp.compose(event)
            rough = PLD_RELATIVE_DISCRETIZATION * float(rdp.get_epsilon(delta))
        discretization = min(PLD_DISCRETIZATION, max(_PLD_MIN_DISCRETIZATION, rough))
    accountant = pld_privacy_accountant.PLDAccountant(value_discretization_interval=discretization)
    accountant.compose(event)
    return max(float(accountant.get_epsilon(delta)), 0.0)


def independent_pld_epsilon(
    events: Sequence[dict[str, Any]],
    *,
    delta: float,
    discretization: float | None = None,
) -> float:
    """ε of the composed events (record ``event`` dicts) with dp-accounting PLD.

    ``discretization`` None chooses the interval relative to ε (see
    :data:`PLD_RELATIVE_DISCRETIZATION`). Never below 0. Non-Poisson sampling
    gives ``inf``: the amplification the accountant assumes does not hold, so
    no finite ε can be vouched for. A chain holding a distributed-DP event is
    recomputed with :func:`independent_epsilon` instead (no PLD exists for it).
    """
    if not events:
        return 0.0
    if any(ev["kind"] == "skellam" for ev in events):
        return independent_epsilon(events, delta=delta)
    step = None if discretization is None else float(discretization)
    return _pld(_runs(events), float(delta), step)


def independent_epsilon(events: Sequence[dict[str, Any]], *, delta: float) -> float:
    """ε with no securefl.dp code: dp-accounting PLD, or for Skellam the independent RDP bound.

    Which method ran is :func:`independent_method`.
    """
    if not events:
        return 0.0
    gaussian, skellam = _split(events)
    if not skellam:
        return independent_pld_epsilon(events, delta=delta)
    return _independent_rdp(gaussian, skellam, float(delta))


def independent_method(events: Sequence[dict[str, Any]]) -> str:
    """The name of the method :func:`independent_epsilon` uses for ``events``."""
    if any(ev["kind"] == "skellam" for ev in events):
        return "independent Skellam RDP bound"
    return "dp-accounting PLD"


@lru_cache(maxsize=4096)
def _independent_rdp(
    gaussian: tuple[_Run, ...], skellam: tuple[_SkRun, ...], delta: float
) -> float:
    from securefl.reports._rdp_independent import Part, rdp_epsilon

    parts: list[Part] = []
    for kind, sampling, sigma, q, steps in gaussian:
        if sampling != "poisson":
            return math.inf
        parts.append(("gauss", sigma, q if kind == "dpsgd" else 1.0, steps))
    for mu, l1, l2, _shares, q, sampling, steps in skellam:
        if sampling != "poisson":
            return math.inf
        parts.append(("skellam", mu, l1, l2, q, steps))
    try:
        return rdp_epsilon(parts, delta)
    except _UNACCOUNTABLE:
        return math.inf


@lru_cache(maxsize=4096)
def _securefl(runs: tuple[_Run, ...], delta: float, accountant: str) -> float:
    from securefl.dp.accounting import epsilon

    if any(run[1] != "poisson" for run in runs):
        return math.inf
    events: list[DPEvent] = [
        DPEvent(
            kind=kind,
            sampling=sampling,
            noise_multiplier=sigma,
            sample_rate=q,
            steps=steps,
            max_grad_norm=1.0,  # does not change ε
            secure_rng=True,
        )
        for kind, sampling, sigma, q, steps in runs
    ]
    try:
        return float(epsilon(events, delta=delta, accountant=accountant))
    except _UNACCOUNTABLE:
        return math.inf


def securefl_epsilon(events: Sequence[dict[str, Any]], *, delta: float, accountant: str) -> float:
    """ε of the composed events with securefl's own accountant module."""
    if not events:
        return 0.0
    gaussian, skellam = _split(events)
    if skellam:
        return _securefl_distributed(gaussian, skellam, float(delta), accountant)
    return _securefl(_runs(events), float(delta), accountant)


@lru_cache(maxsize=4096)
def _securefl_distributed(
    gaussian: tuple[_Run, ...], skellam: tuple[_SkRun, ...], delta: float, accountant: str
) -> float:
    from securefl.dp.accounting import epsilon
    from securefl.dp.events import SkellamEvent

    if any(run[1] != "poisson" for run in gaussian) or any(r[5] != "poisson" for r in skellam):
        return math.inf
    try:
        events: list[DPEvent] = [
            SkellamEvent.create(
                mu_total=mu,
                l1_sensitivity=l1,
                l2_sensitivity=l2,
                shares=shares,
                sample_rate=q,
                steps=steps,
                max_grad_norm=1.0,  # does not change ε
                secure_rng=True,
            )
            for mu, l1, l2, shares, q, _sampling, steps in skellam
        ]
        events += [
            DPEvent(
                kind=kind,
                noise_multiplier=sigma,
                sample_rate=q,
                steps=steps,
                max_grad_norm=1.0,
                secure_rng=True,
            )
            for kind, _sampling, sigma, q, steps in gaussian
        ]
        return float(epsilon(events, delta=delta, accountant=accountant))
    except _UNACCOUNTABLE:
        return math.inf
