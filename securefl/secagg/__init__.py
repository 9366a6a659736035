"""Masked secure aggregation (SecAgg+): the server learns only the sum of the updates.

Each site adds pairwise masks (which cancel in the sum) and a self mask to its
quantized update; Shamir shares of the masking secrets let the server remove
the masks of sites that drop out, and only those. A consistency round of
signatures, with a threshold sized for a cheating server plus colluding sites,
stops a server from showing different survivor lists to different sites; key
adverts sign the round start each site received, so no site can be given a
different model or settings unnoticed. The integer path
(:class:`IntegerMaskSite`, :class:`IntegerMaskServer`) carries distributed-DP
vectors: no weight slot, no clip, a ring from the ring plan. Protocol, stages and benchmarks:
``docs/mask.md``; what is and is not guaranteed: ``threat_models/mask.md``.
"""

from __future__ import annotations

from securefl.secagg._config import (
    MaskConfig,
    MaskPlan,
    colluders_tolerated,
    dropouts_tolerated,
    max_missing,
)
from securefl.secagg._integer import (
    IntegerMaskServer,
    IntegerMaskServerMode,
    IntegerMaskSite,
    IntegerMaskSiteMode,
    IntegerRing,
    IntegerSum,
)
from securefl.secagg._messages import (
    ADVERTISE,
    CONSISTENCY,
    CONSISTENCY_REQUEST,
    MASKED_INPUT,
    MASKED_INPUT_REQUEST,
    SHARE,
    SHARE_REQUEST,
    UNMASK,
    UNMASK_REQUEST,
)
from securefl.secagg._mode import MaskServerMode, MaskSiteMode
from securefl.secagg._multisig import BlsRoster, bls_entry
from securefl.secagg._server import MaskServer
from securefl.secagg._site import MaskSite

STAGES = (ADVERTISE, SHARE, MASKED_INPUT, CONSISTENCY, UNMASK)
"""Site-to-server stage names, in protocol order (what ``--dropout SITE@STAGE`` names)."""
REQUEST_STAGES = (SHARE_REQUEST, MASKED_INPUT_REQUEST, CONSISTENCY_REQUEST, UNMASK_REQUEST)
"""Server-to-site stage names."""

__all__ = [
    "MASKED_INPUT",
    "REQUEST_STAGES",
    "STAGES",
    "BlsRoster",
    "IntegerMaskServer",
    "IntegerMaskServerMode",
    "IntegerMaskSite",
    "IntegerMaskSiteMode",
    "IntegerRing",
    "IntegerSum",
    "MaskConfig",
    "MaskPlan",
    "MaskServer",
    "MaskServerMode",
    "MaskSite",
    "MaskSiteMode",
    "bls_entry",
    "colluders_tolerated",
    "dropouts_tolerated",
    "max_missing",
]
