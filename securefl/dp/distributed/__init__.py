"""Distributed DP building blocks: each site adds a share of Skellam noise to integers.

The mechanism of ``docs/distributed_dp.md``: a site scales its clipped
gradient sum by a power of two and rounds it to integers
(:func:`randomized_round`, sensitivity :func:`sensitivity`), adds its share of
exact Skellam noise (:func:`noise_share`, :func:`add_noise_share`), and
submits the integer vector through secure aggregation in a ring sized by
:func:`ring_plan`, so that only the sum, carrying the full noise, is seen.

Accounting (the Skellam RDP and its Poisson subsampling) and the Site API
integration are separate steps; these are the pieces they build on.
"""

from securefl.dp.distributed._ring import (
    RingPlan,
    batch_bound,
    ring_plan,
    signal_bound,
    skellam_tail,
    wrap_probability,
)
from securefl.dp.distributed._rounding import (
    MAX_SCALED,
    Sensitivity,
    randomized_round,
    sensitivity,
)
from securefl.dp.distributed._shares import NoiseShare, add_noise_share, noise_share

__all__ = [
    "MAX_SCALED",
    "NoiseShare",
    "RingPlan",
    "Sensitivity",
    "add_noise_share",
    "batch_bound",
    "noise_share",
    "randomized_round",
    "ring_plan",
    "sensitivity",
    "signal_bound",
    "skellam_tail",
    "wrap_probability",
]
