"""A cheating site's signed weight above ``max_weight`` is refused when the sum is opened.

The server refuses such an upload (``parse_update`` checks the weight), so
this plays a cheating site *and* a server that lets it through: site c signs
a header announcing twice ``max_weight`` for the chunks it encrypted at an
honest weight. Opened, the sum would be divided by a total weight the
ciphertexts do not hold, moving the mean by a factor the site chose; the
opening site refuses it instead, as a sum honest inputs cannot produce.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FEDERATION, MAX_WEIGHT, Kit

from securefl.aggregation.base import RoundContext
from securefl.errors import AbortError
from securefl.he import open_aggregate
from securefl.he._trust import update_message
from securefl.wire import pack, unpack

D = 64
COHORT = ("a", "b", "c")


def _honest_sum(kit: Kit) -> bytes:
    rc = RoundContext(
        federation=FEDERATION, round=7, cohort=COHORT, dimension=D, max_weight=MAX_WEIGHT
    )
    server = kit.server_mode().server(rc)
    for i, site in enumerate(COHORT):
        update = np.full(D, 0.01 * (i + 1), np.float32)
        (env,) = kit.site_mode(site).site(rc, site).submit(update, 10.0)
        server.handle(env)
    assert server.result is not None and server.result.encrypted_sum is not None
    return server.result.encrypted_sum


def _open(kit: Kit, blob: bytes):
    return open_aggregate(
        kit.secret, blob, D, roster=kit.roster, federation=FEDERATION, max_weight=MAX_WEIGHT
    )


@pytest.mark.parametrize("factor", [2.0, 1.0 + 2**-20])
def test_a_signed_weight_above_max_weight_is_refused_at_the_site(ckks_kit: Kit, factor: float):
    blob = _honest_sum(ckks_kit)
    assert _open(ckks_kit, blob).total_weight == 30.0  # the honest sum opens
    obj = unpack(blob)
    site, _, round_digest, digest, _ = obj["uploads"][2]
    assert site == "c"
    inflated = MAX_WEIGHT * factor
    message = update_message(
        federation=FEDERATION,
        round_id=obj["round"],
        site="c",
        key_id=ckks_kit.secret.key_id,
        preset=ckks_kit.secret.preset.name,
        dimension=D,
        weight=inflated,
        max_weight=MAX_WEIGHT,
        round_digest=round_digest,
        digest=digest,
    )
    header = ["c", inflated, round_digest, digest, ckks_kit.keys["c"].sign(message)]
    cheating = pack({**obj, "uploads": [*obj["uploads"][:2], header]})
    with pytest.raises(AbortError):
        _open(ckks_kit, cheating)
