"""An HE site's upload: each coordinate clipped on both sides, only flat vectors, helpers on demand.

The server's sum and the sites' feasibility check rest on every encrypted
coordinate lying in [-clip, clip] (scaled by weight / max_weight): a site that
clipped only from above could push the sum below any bound. The upload is
decrypted here with the federation's key and its values are checked, the way
the keymaker would see them.
"""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
from conftest import FEDERATION, MAX_WEIGHT, Kit

from securefl.aggregation.base import RoundContext
from securefl.errors import DataError
from securefl.he import HESiteMode
from securefl.he._codec import decrypt_chunks, num_chunks
from securefl.he._messages import parse_update
from securefl.he._pool import MIN_CHUNKS_PER_CORE

D = 64
COHORT = ("a", "b", "c")


def _rc(dimension: int = D) -> RoundContext:
    return RoundContext(
        federation=FEDERATION,
        round=3,
        cohort=COHORT,
        dimension=dimension,
        max_weight=MAX_WEIGHT,
        min_sites=2,
    )


def _decrypted_upload(kit: Kit, update: np.ndarray, weight: float) -> np.ndarray:
    (env,) = kit.site_mode("a").site(_rc(), "a").submit(update, weight)
    secret = kit.secret
    _, _, chunks, _ = parse_update(
        env.payload,
        preset=secret.preset.name,
        key_id=secret.key_id,
        dimension=D,
        max_weight=MAX_WEIGHT,
        chunks=num_chunks(secret.preset, D),
    )
    return decrypt_chunks(secret, chunks, D)[:D]


def test_a_ckks_upload_is_clipped_from_below_and_from_above(ckks_kit: Kit) -> None:
    clip = ckks_kit.secret.clip
    update = np.zeros(D, dtype=np.float32)
    update[:3] = [-1e6, 1e6, -clip / 2]
    got = _decrypted_upload(ckks_kit, update, MAX_WEIGHT)  # weight = max: scale 1
    np.testing.assert_allclose(got[:3], [-clip, clip, -clip / 2], atol=1e-3 * clip)
    assert np.all(np.abs(got) <= clip * (1 + 1e-3))


def test_a_ckks_upload_is_scaled_by_weight_over_max_weight(ckks_kit: Kit) -> None:
    clip = ckks_kit.secret.clip
    update = np.full(D, clip / 2, dtype=np.float32)
    got = _decrypted_upload(ckks_kit, update, MAX_WEIGHT / 4)
    np.testing.assert_allclose(got, clip / 8, atol=1e-3 * clip)


@pytest.mark.parametrize("shape", [(D, 2), (D, 1), (1, D)])
def test_an_update_that_is_not_a_flat_vector_is_refused(
    bfv_kit: Kit, shape: tuple[int, int]
) -> None:
    site = bfv_kit.site_mode("a").site(_rc(), "a")
    with pytest.raises(DataError):
        site.submit(np.zeros(shape, dtype=np.float32), 1.0)


def test_warm_up_starts_workers_minus_one_helpers_and_only_with_processes(bfv_kit: Kit) -> None:
    big = 2 * MIN_CHUNKS_PER_CORE * bfv_kit.secret.preset.slots
    key = bfv_kit.keys["a"]
    off = HESiteMode(
        bfv_kit.secret, site_id="a", signing_key=key, max_weight=1.0, workers=2, processes=False
    )
    before = {p.pid for p in multiprocessing.active_children()}
    off.warm_up()
    assert {p.pid for p in multiprocessing.active_children()} == before
    mode = HESiteMode(bfv_kit.secret, site_id="a", signing_key=key, max_weight=1.0, workers=2)
    try:
        mode.warm_up()
        started = {p.pid for p in multiprocessing.active_children()} - before
        assert len(started) == 1
        pool = mode.pool(big)
        assert pool is not None and pool.helpers == 1
    finally:
        mode.close()
