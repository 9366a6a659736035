"""What a site accepts when the server opens a round, checked before any privacy is spent.

Why a separate step: the server is not trusted with the settings it announces.
:meth:`RoundStart.from_bytes` already refuses values of the wrong type or
range (a NaN weight bound, a cohort listing a site twice); here each setting
is held against the site's *own* policy: its name, its roster, its minimum
cohort, its dataset size and its training plan. Every check runs before the
site reserves privacy in its ledger, so a cheating or misconfigured server
costs the site nothing but the round.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from securefl.errors import ConfigError, ProtocolError
from securefl.runtime.messages import RoundStart

__all__ = ["MAX_PROXIMAL_MU", "ROUND_CONFIG_KEYS", "RoundSettings", "SitePolicy", "check_round"]

#: The per-round settings a server may announce; anything else is refused.
ROUND_CONFIG_KEYS = frozenset({"proximal_mu", "local_epochs", "distributed"})
#: FedProx's μ above this is not a proximal term but a freeze of the model.
MAX_PROXIMAL_MU = 100.0


@dataclass(frozen=True, kw_only=True)
class SitePolicy:
    """The site's own terms for taking part in a round.

    ``roster`` is the set of sites the site knows belong to the federation
    (``None``: not known, only the cohort's shape is checked). ``max_weight``
    is the federation's weight bound from the site's own configuration
    (``None``: not configured, any bound at least the dataset size is taken).
    """

    site: str
    min_sites: int
    local_epochs: int
    dataset_size: int
    roster: Collection[str] | None = None
    max_weight: float | None = None
    #: privacy = "distributed": the public numbers of the site's own plan (else ``None``)
    distributed: Mapping[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class RoundSettings:
    """The settings of one round after the site accepted them."""

    proximal_mu: float


def check_round(start: RoundStart, policy: SitePolicy) -> RoundSettings:
    """Hold a decoded round start against the site's policy.

    Raises:
        ProtocolError: a setting no honest server sends (the site is not in
            the cohort, a stranger is, the cohort or minimum is below the
            site's own minimum, an unknown or out-of-range round setting).
        ConfigError: the federation's settings do not fit this site (its
            dataset is larger than the weight bound, its local epochs differ).
    """
    cohort = start.cohort
    if policy.site not in cohort:
        raise ProtocolError(f"the server opened a round for a cohort without {policy.site!r}")
    if policy.roster is not None:
        strangers = sorted(set(cohort) - set(policy.roster))
        if strangers:
            raise ProtocolError(f"the round's cohort lists sites not on the roster: {strangers}")
    if start.min_sites < policy.min_sites or len(cohort) < policy.min_sites:
        raise ProtocolError(
            f"the server opened a round of {len(cohort)} site(s) with min_sites="
            f"{start.min_sites}; this site requires at least {policy.min_sites}"
        )
    if len(cohort) < start.min_sites:
        raise ProtocolError(
            f"the round's cohort of {len(cohort)} is below its own min_sites={start.min_sites}"
        )
    if policy.max_weight is not None and start.max_weight != policy.max_weight:
        raise ProtocolError(
            f"the server announced max_weight={start.max_weight:g} but this site's "
            f"rounds.max_weight={policy.max_weight:g}; it scales what the site accepts"
        )
    if policy.dataset_size > start.max_weight:
        raise ConfigError(
            f"the federation's max_weight={start.max_weight:g} is below this site's "
            f"{policy.dataset_size} training examples; the coordinator must raise max_weight "
            "(nothing was trained or spent)"
        )
    return RoundSettings(proximal_mu=_round_config(start.config, policy))


def _round_config(config: Mapping[str, Any], policy: SitePolicy) -> float:
    unknown = sorted(set(config) - ROUND_CONFIG_KEYS)
    if unknown:
        raise ProtocolError(f"the server sent unknown round settings {unknown}")
    if policy.distributed is not None:
        from securefl.runtime._distributed import check_announced

        check_announced(config.get("distributed"), dict(policy.distributed))
    elif "distributed" in config:
        raise ProtocolError(
            'the server announced distributed DP but this site runs privacy = "local"; '
            "the federation files must agree"
        )
    epochs = config.get("local_epochs", policy.local_epochs)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs != policy.local_epochs:
        raise ConfigError(
            f"the server announced local_epochs={epochs!r} but this site's "
            f"train.local_epochs={policy.local_epochs}; its privacy plan is sized for that"
        )
    mu = config.get("proximal_mu", 0.0)
    if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not 0 <= mu <= MAX_PROXIMAL_MU:
        raise ProtocolError(f"the server sent an invalid proximal_mu {mu!r}")
    return float(mu)
