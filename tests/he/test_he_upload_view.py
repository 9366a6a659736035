"""What an HE site uploads hides what it encrypts, not just the float bytes of Δ.

The values that travel are the site's *encoding* of its update: quantized
integers under BFV, clipped float64 under CKKS. A leak check that searched
only for the float32 bytes of Δ could not fail with encryption turned off;
these look for the encoded values themselves, and for the randomness that
makes two encryptions of one update differ.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FEDERATION, MAX_WEIGHT, Kit

from securefl.aggregation.base import RoundContext
from securefl.he._fixed_point import quantize

D = 600
COHORT = ("a", "b", "c")


def _rc() -> RoundContext:
    return RoundContext(
        federation=FEDERATION,
        round=2,
        cohort=COHORT,
        dimension=D,
        max_weight=MAX_WEIGHT,
        min_sites=2,
    )


def _upload(kit: Kit, update: np.ndarray) -> bytes:
    (env,) = kit.site_mode("a").site(_rc(), "a").submit(update, MAX_WEIGHT)
    return env.to_bytes()


@pytest.mark.parametrize("scheme", ["bfv", "ckks"])
def test_the_encoded_update_never_travels_and_each_upload_is_fresh(
    scheme: str, bfv_kit: Kit, ckks_kit: Kit
) -> None:
    kit = bfv_kit if scheme == "bfv" else ckks_kit
    secret = kit.secret
    update = np.random.default_rng(5).normal(scale=0.05, size=D).astype(np.float32)  # test data
    scaled = update.astype(np.float64)  # weight = max_weight: the scaled update is Δ itself
    if scheme == "bfv":
        encoded = quantize(scaled, clip=secret.clip, levels=secret.preset.quant_levels)
        assert np.count_nonzero(encoded) > D // 2  # the check below is not about zeros
        raw = encoded.astype(np.int64).tobytes()
    else:
        raw = np.clip(scaled, -secret.clip, secret.clip).tobytes()
    first, second = _upload(kit, update), _upload(kit, update)
    assert first != second, "two encryptions of one update are identical"
    for seen in (first, second):
        windows = [raw[i : i + 32] for i in range(0, len(raw) - 32, 8 * 7)]
        assert not any(w in seen for w in windows), "the encoded update travels in the clear"
        assert update.tobytes()[:32] not in seen
