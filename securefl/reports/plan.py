"""Dry run of a federation before any training: privacy cost and threat summary.

Why: a federation's privacy is decided when its configuration is written, not
when the first round runs. ``plan`` shows each site what its budget buys
(the noise multiplier, ε after every round under each accountant, how many
rounds the budget allows) and states in plain words what the chosen secure
aggregation mode does and does not hide, computed from the same
configuration the parties will run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from securefl.config import ACCOUNTANTS, FederationConfig
from securefl.errors import ConfigError
from securefl.reports.plan_query import (
    PrivacyModels,
    _epsilon,
    check_query,
    compare_privacy_models,
    noise_multipliers,
    query_epsilons,
)
from securefl.secagg import MaskConfig

__all__ = [
    "FederationPlan",
    "PrivacyModels",
    "SitePlan",
    "ThreatSummary",
    "check_query",
    "compare_privacy_models",
    "noise_multipliers",
    "plan_federation",
    "query_epsilons",
    "threat_summary",
]

#: The mask settings the parties run (``simulate`` uses the protocol's defaults).
_MASK = MaskConfig(clip=1.0)

#: ``securefl.he.MIN_SUMMANDS`` (kept free of TenSEAL; tests/he/test_he_plan.py checks it).
_HE_MIN_SUMMANDS = 3
#: How far past ``rounds.max_rounds`` the "rounds allowed" search looks.
ROUNDS_SEARCH_FACTOR = 10


@dataclass(frozen=True)
class SitePlan:
    """What one site's budget buys under the federation's settings."""

    site: str
    num_examples: int
    sample_rate: float
    steps_per_round: int
    planned_rounds: int
    epsilon_budget: float
    delta: float
    accountant: str
    noise_multiplier: float
    calibrated: bool
    #: accountant -> ε after planned rounds 1, 2, …
    epsilon_by_round: dict[str, list[float]]
    rounds_allowed: int
    rounds_allowed_is_lower_bound: bool


@dataclass(frozen=True)
class ThreatSummary:
    """What each party can learn in the chosen mode, in words, from the config."""

    mode: str
    num_sites: int
    threshold: int | None
    server_sees: str
    collusion: str
    dropouts: str
    dp: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FederationPlan:
    """The whole dry run."""

    federation: str
    sites: tuple[SitePlan, ...]
    threat: ThreatSummary

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return asdict(self)


def _rounds_allowed(
    spr: int, sigma: float, q: float, *, delta: float, budget: float, accountant: str, cap: int
) -> tuple[int, bool]:
    """Largest r ≤ cap with ε(r rounds) ≤ budget, by exponential then binary search."""

    def fits(r: int) -> bool:
        return _epsilon(sigma, q, r * spr, delta, accountant) <= budget

    if not fits(1):
        return 0, False
    lo, hi = 1, 2
    while hi <= cap and fits(hi):
        lo, hi = hi, hi * 2
    if hi > cap:
        if fits(cap):
            return cap, True
        hi = cap
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo, False


def _plan_site(
    config: FederationConfig, name: str, n: int | None, accountants: Sequence[str]
) -> SitePlan:
    from securefl.dp.accounting import check_delta
    from securefl.dp.calibration import calibrate_noise

    dp = config.site_dp(name)
    if n is None:
        raise ConfigError(f"sites.{name}.num_examples is needed to plan (sample rate = batch / n)")
    check_delta(dp.delta, num_examples=n, name=f"dp.delta of site {name!r}")
    q = dp.batch_size / n
    if q > 1:
        raise ConfigError(f"dp.batch_size {dp.batch_size} exceeds sites.{name}.num_examples {n}")
    spr = config.train.local_epochs * math.ceil(n / dp.batch_size)
    rounds = config.rounds.max_rounds
    sigma = dp.noise_multiplier
    if sigma is None:
        sigma = float(
            calibrate_noise(
                target_epsilon=dp.epsilon,
                delta=dp.delta,
                sample_rate=q,
                steps=rounds * spr,
                accountant=dp.accountant,
            )
        )
    by_round = {
        a: [_epsilon(sigma, q, r * spr, dp.delta, a) for r in range(1, rounds + 1)]
        for a in accountants
    }
    allowed, capped = _rounds_allowed(
        spr,
        sigma,
        q,
        delta=dp.delta,
        budget=dp.epsilon,
        accountant=dp.accountant,
        cap=ROUNDS_SEARCH_FACTOR * rounds,
    )
    return SitePlan(
        site=name,
        num_examples=n,
        sample_rate=q,
        steps_per_round=spr,
        planned_rounds=rounds,
        epsilon_budget=dp.epsilon,
        delta=dp.delta,
        accountant=dp.accountant,
        noise_multiplier=sigma,
        calibrated=dp.noise_multiplier is None,
        epsilon_by_round=by_round,
        rounds_allowed=allowed,
        rounds_allowed_is_lower_bound=capped,
    )


def threat_summary(config: FederationConfig) -> ThreatSummary:
    """Describe the chosen mode for this number of sites and these settings."""
    n, m, mode = len(config.sites), config.rounds.min_sites, config.secure
    notes: list[str] = []
    if n < m:
        notes.append(f"rounds.min_sites = {m} but only {n} sites are listed: no round can complete")
    dp = (
        f"each site's update is differentially private for its own patients under DP-SGD "
        f"(budget per site, δ = {config.dp.delta:g}) in every mode; secure aggregation adds to "
        f"this, it does not replace it"
    )
    threshold: int | None = None
    if mode == "plain":
        sees = "every site's DP-noised update, one by one"
        collusion = (
            "no secure aggregation: the server alone reads each update; only DP protects patients"
        )
        drops = f"any number, as long as at least {m} sites report in a round"
    elif mode == "mask":
        sees = (
            "only the sum of the surviving sites' updates; "
            "each masked vector looks uniformly random"
        )
        if n < config.mask.min_cohort:
            collusion = (
                f"no masked round can run: the minimum cohort is {config.mask.min_cohort} sites"
            )
            drops = "none: no round can open"
            notes.append(
                "with fewer than 3 sites the sum reveals the other site's update to each site"
            )
        else:
            threshold, collusion, drops = _mask_threat(n, m, config.mask)
    else:
        sees, collusion, drops = _he_threat(n, m, notes)
    return ThreatSummary(
        mode=mode,
        num_sites=n,
        threshold=threshold,
        server_sees=sees,
        collusion=collusion,
        dropouts=drops,
        dp=dp,
        notes=tuple(notes),
    )


def _he_threat(n: int, min_sites: int, notes: list[str]) -> tuple[str, str, str]:
    """Server view, collusion and dropout lines for ``he`` (tests/he/test_he_plan.py)."""
    need = max(min_sites, _HE_MIN_SUMMANDS)
    sees = (
        "ciphertexts only: it checks each site's signed upload and adds them; each site gets "
        "only the sum with the summands' signed headers (its own among them) and decrypts it; "
        "the server never holds the secret key"
    )
    collusion = (
        "all sites share the secret key: any one site colluding with the server decrypts every "
        f"site's update; without collusion a site opens only a sum of at least {need} uploads "
        f"(max(min_sites, {_HE_MIN_SUMMANDS}): a sum of 2 would reveal each update to the other "
        "site, so 3 is the floor)"
    )
    if n < need:
        drops = "none: no round can open"
        notes.append(
            f"he needs at least {need} sites per round (a sum of two reveals each update to the "
            f"other site); only {n} are listed"
        )
    else:
        drops = f"up to {n - need} of {n}: a round needs at least {need} uploads, fewer aborts it"
    notes.append(
        "he: a cheating site (it holds the key) can move the mean by up to "
        "n·clip·max_weight/Σw per coordinate, not only by its own clip share; that the sum is "
        "exactly the listed uploads is the server's word (a cheating server can substitute "
        "another sum within that bound)"
    )
    return sees, collusion, drops


def _mask_threat(n: int, min_sites: int, mask: MaskConfig = _MASK) -> tuple[int, str, str]:
    """Threshold, collusion and dropout lines for a masked federation of n, from the real plan
    of the federation file's own ``[mask]`` settings.

    The server picks each round's cohort, so the collusion line gives what
    holds in *every* cohort it may open (``MaskConfig.federation_tolerance``),
    not only in a round of all n sites.
    """
    names = tuple(f"site-{i:05d}" for i in range(n))
    plan = mask.plan(federation="plan", round_id=1, cohort=names, federation_size=n)
    t, full = plan.threshold, plan.colluders_tolerated
    c, smallest = mask.assumed_colluders(n), mask.smallest_cohort(n)
    tol = mask.federation_tolerance(n)
    cap = mask.complete_graph_max
    rule = "sets t with 2t > n + c in a cohort of n sites"
    if n > cap:  # larger cohorts run the k-regular graph, whose t follows its own bounds
        rule = (
            f"sets t with 2t > n + c in a cohort of n <= {cap} sites and, in larger cohorts, "
            f"the k and t of the k-regular graph (sized for a {mask.corrupt_rate:.0%} "
            f"colluding fraction, not for c)"
        )
    collusion = (
        f"a cheating server together with up to {tol} colluding sites learns nothing beyond "
        f"the sum of the honest sites' updates, in every cohort it may open: each site takes "
        f"c = {c} colluders from the federation's {n} sites (not from the cohort the server "
        f"picked), {rule}, and refuses cohorts of fewer than {smallest} sites so every sum "
        f"holds at least two honest sites"
    )
    if plan.complete:
        collusion += (
            f" (a round of all {n}: threshold t = {t} of n = {n}, min(2t - n - 1, n - 2) = {full})"
        )
    else:
        collusion += (
            f" (a round of all {n}: k-regular graph, each site's secrets shared among its "
            f"{plan.k} neighbours and itself, threshold t = {t} of {plan.k + 1}, at most "
            f"{plan.missing_allowed} missing, up to {full} colluders anywhere in the cohort, "
            f"whatever order the server makes the sites fall in; the server picks the cohort "
            f"and round id, so it can search for an order, and the 2^-40 bound for up to "
            f"{mask.corrupt_rate:.0%} of sites colluding holds only if the colluders are "
            f"placed at random, independently of that order)"
        )
        if mask.neighbourhood:
            collusion += (
                "; the neighbourhood round (mask.neighbourhood) keeps that count: each site "
                "checks its holders' adverts and one BLS aggregate of the cohort's consistency "
                "signatures, so the roster must carry every site's BLS key (provisioned by "
                "this version of securefl)"
            )
    if tol + 1 < n:
        collusion += (
            f"; with {tol + 1} or more colluding sites it can open a cohort where that is too "
            f"many and read individual updates (by showing different survivor lists to "
            f"different sites, or from the sum itself where one honest site remains)"
        )
    need = max(t if plan.complete else 0, min_sites, mask.min_cohort)
    allowed = min(plan.missing_allowed, n - need)
    if allowed <= 0:
        drops = (
            f"none: all {n} sites must complete every round (threshold t = {t} of n = {n}); "
            f"a site that drops out aborts the round, and masking then reveals nothing"
        )
    elif plan.complete:
        drops = (
            f"up to {allowed} of {n} sites may drop out mid-round: at least {n - allowed} must "
            f"survive (t = {t} to rebuild masks, min_sites = {min_sites}, and a minimum cohort "
            f"of {mask.min_cohort} so no update is isolated); more dropouts abort the round"
        )
    else:
        drops = (
            f"up to {allowed} of {n} sites may be missing from a round "
            f"(dropout_rate = {mask.dropout_rate:.0%} of the cohort, and each site needs {t} "
            f"of its {plan.k + 1} holders); more missing sites abort the round"
        )
    return t, collusion, drops


def plan_federation(
    config: FederationConfig, *, accountants: Sequence[str] = ACCOUNTANTS
) -> FederationPlan:
    """Plan every site of ``config`` (each needs ``num_examples``)."""
    if not config.sites:
        raise ConfigError("no [[sites]] in the federation file: nothing to plan")
    sites = tuple(_plan_site(config, s.name, s.num_examples, accountants) for s in config.sites)
    return FederationPlan(federation=config.name, sites=sites, threat=threat_summary(config))
