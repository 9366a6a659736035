"""A BFV sum of more than the preset's ``max_sites`` updates could wrap modulo t.

Each site's quantized value is bounded so that ``max_sites`` of them stay below
t/2 (``HEPreset.bfv_level``); with more summands the decrypted sum wraps to a
wrong but plausible value. A site therefore refuses a round whose cohort is
larger than the preset allows, before it encrypts anything.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FEDERATION, MAX_WEIGHT, Kit

from securefl.aggregation.base import RoundContext
from securefl.errors import ConfigError


def _rc(size: int) -> RoundContext:
    cohort = tuple(sorted(["a", *(f"s{i:05d}" for i in range(size - 1))]))
    return RoundContext(
        federation=FEDERATION,
        round=1,
        cohort=cohort,
        dimension=8,
        max_weight=MAX_WEIGHT,
        min_sites=2,
    )


def test_cohort_above_the_bfv_presets_limit_is_refused(bfv_kit: Kit) -> None:
    limit = bfv_kit.secret.preset.max_sites
    mode = bfv_kit.site_mode("a")
    at_limit = mode.site(_rc(limit), "a").submit(np.zeros(8, dtype=np.float32), 1.0)
    assert len(at_limit) == 1  # the largest cohort the preset admits still encrypts
    with pytest.raises(ConfigError):
        mode.site(_rc(limit + 1), "a")


def test_the_server_refuses_to_open_a_round_whose_bfv_sum_could_wrap(bfv_kit: Kit) -> None:
    """The server side of the same limit: no round above max_sites is started at all.

    Every site refuses such a round too (above), but a server that started it
    would collect nothing usable; it refuses before it accepts any upload.
    """
    limit = bfv_kit.secret.preset.max_sites
    server_mode = bfv_kit.server_mode()
    at_limit = server_mode.server(_rc(limit))
    assert at_limit.result is None  # opened, waiting for uploads
    with pytest.raises(ConfigError):
        server_mode.server(_rc(limit + 1))
