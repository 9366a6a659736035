"""Edges of opening an he aggregate that a mutation sample found unguarded (docs/mutation.md).

Honest sums at the very edge of what clipped inputs reach must open (the
feasibility bounds are tight, not off by one), the announced total weight
must equal the signed weights exactly (not within a tolerance a server could
use to move the mean), and ``decrypt_sum`` gives Σ w·Δ after the same checks.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FEDERATION, MAX_WEIGHT, Kit

from securefl.aggregation.base import RoundContext
from securefl.errors import IntegrityError
from securefl.he import decrypt_aggregate, decrypt_sum, open_aggregate

D = 64
COHORT = ("a", "b", "c")


def _sum(kit: Kit, updates: dict[str, np.ndarray], weight: float) -> tuple[bytes, float]:
    rc = RoundContext(
        federation=FEDERATION, round=9, cohort=COHORT, dimension=D, max_weight=MAX_WEIGHT
    )
    server = kit.server_mode().server(rc)
    for site in COHORT:
        (env,) = kit.site_mode(site).site(rc, site).submit(updates[site], weight)
        server.handle(env)
    result = server.result
    assert result is not None and result.encrypted_sum is not None
    return result.encrypted_sum, result.total_weight


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("scheme", ["bfv", "ckks"])
def test_every_site_at_its_full_clip_and_weight_still_opens(
    bfv_kit: Kit, ckks_kit: Kit, scheme: str, sign: float
) -> None:
    """The largest sum honest inputs make: n sites at +clip (or -clip) and max_weight."""
    kit = bfv_kit if scheme == "bfv" else ckks_kit
    clip = kit.secret.clip
    full = {s: np.full(D, sign * clip, np.float32) for s in COHORT}
    blob, _ = _sum(kit, full, MAX_WEIGHT)
    opened = open_aggregate(
        kit.secret, blob, D, roster=kit.roster, federation=FEDERATION, max_weight=MAX_WEIGHT
    )
    np.testing.assert_allclose(opened.mean(), sign * np.float32(clip), rtol=1e-5)


def test_the_announced_total_weight_must_equal_the_signed_weights(ckks_kit: Kit) -> None:
    updates = {s: np.full(D, 0.01 * (i + 1), np.float32) for i, s in enumerate(COHORT)}
    blob, total = _sum(ckks_kit, updates, 10.0)
    kw = {"roster": ckks_kit.roster, "federation": FEDERATION, "max_weight": MAX_WEIGHT}
    mean = decrypt_aggregate(ckks_kit.secret, blob, total, D, **kw)
    np.testing.assert_allclose(mean, 0.02, rtol=1e-5)
    for announced in (total + 5e-9, total * (1 + 1e-9), total + 0.5, total * 1.5, total / 2):
        with pytest.raises(IntegrityError):
            decrypt_aggregate(ckks_kit.secret, blob, announced, D, **kw)


def test_decrypt_sum_is_the_weighted_sum_after_every_check(ckks_kit: Kit) -> None:
    updates = {s: np.full(D, 0.01 * (i + 1), np.float32) for i, s in enumerate(COHORT)}
    blob, _ = _sum(ckks_kit, updates, 10.0)
    kw = {"roster": ckks_kit.roster, "federation": FEDERATION, "max_weight": MAX_WEIGHT}
    np.testing.assert_allclose(decrypt_sum(ckks_kit.secret, blob, D, **kw), 0.6, rtol=1e-5)
    with pytest.raises(IntegrityError):  # the same checks: another max_weight is refused
        decrypt_sum(ckks_kit.secret, blob, D, **{**kw, "max_weight": 2 * MAX_WEIGHT})
