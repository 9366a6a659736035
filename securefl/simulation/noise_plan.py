"""Each site's noise multiplier, calibrated for all sites at once when there are many.

Why: a site's sample rate is 1/batches and its steps rounds × epochs ×
batches, so sites of different sizes need different σ, and an exact
calibration costs a few tenths of a second per distinct (rate, steps). A
simulation of hundreds of unequal sites would spend minutes before its first
round. :func:`~securefl.dp.calibrate_noise_many` calibrates a few anchors
exactly and certifies every other site's σ with the exact accountant on that
site's own event, so no site is ever under-noised.

A federation with few distinct site sizes keeps exact per-site calibration
(each site does it in ``privatize``), so small runs are unchanged.
"""

from __future__ import annotations

import math

from securefl.config import FederationConfig
from securefl.data.federations import FederatedData
from securefl.dp import calibrate_noise_many
from securefl.dp.calibration import site_calibration_request

__all__ = ["MANY_SIZES", "site_noise_multipliers"]

#: Above this many distinct (rate, steps) pairs, σ is calibrated for all sites at once.
MANY_SIZES = 8


def site_noise_multipliers(data: FederatedData, config: FederationConfig) -> dict[str, float]:
    """σ per site name, or ``{}`` where each site calibrates its own (few sizes, fixed σ).

    The rate and steps are exactly those :meth:`~securefl.runtime.Site.privatize`
    uses for the built-in trainer's loader (``ceil(records / batch_size)`` batches).
    """
    dp = config.dp
    if config.privacy != "local" or dp.noise_multiplier is not None:
        return {}
    requests: dict[str, tuple[float, int]] = {}
    for site in data.sites:
        requests[site.name] = site_calibration_request(
            math.ceil(site.num_examples / dp.batch_size),  # the built-in trainer's loader
            rounds=config.rounds.max_rounds,
            epochs=config.train.local_epochs,
        )
    if len(set(requests.values())) <= MANY_SIZES:
        return {}
    names = list(requests)
    sigmas = calibrate_noise_many(
        [requests[n] for n in names],
        target_epsilon=dp.epsilon,
        delta=dp.delta,
        accountant=dp.accountant,
    )
    return dict(zip(names, sigmas, strict=True))
