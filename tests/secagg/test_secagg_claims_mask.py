"""Claims of threat_models/mask.md shown by a round that must complete with the right sum.

``test_masks_cancel_for_any_set_of_survivors`` lets any drop pattern abort
(more than n − t missing must), so a round whose masks fail to cancel, and
which the server's feasibility check then rejects, passed it as an "abort".
Here at most n − t sites drop: the round must complete with the exact sum.

A share replaced by a random value interpolates out of the secret range,
which Shamir's own tripwire refuses before any commitment is consulted; a
share shifted by one keeps the secret in range and only the commitment (b)
or the signed public key (s) can tell the rebuilt secret is wrong.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from secagg_driver import (
    QUICK_D,
    Federation,
    edit_payload,
    plaintext,
    quick_round,
    random_updates,
    run_round,
)

from securefl.hazmat import shamir
from securefl.secagg import STAGES, MaskConfig
from securefl.secagg import _messages as m

D = 8
MAX_W = 10.0
N = 6
FED = Federation(Path(tempfile.mkdtemp(prefix="secagg-claims-")), N, MaskConfig(clip=1.0))
_ROUND = iter(range(1, 1 << 30))


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    drops=st.dictionaries(st.sampled_from(range(N)), st.sampled_from(STAGES), max_size=2),
    vals=st.lists(st.floats(-2.0, 2.0, width=32), min_size=N * D, max_size=N * D),
    ws=st.lists(st.floats(0.5, MAX_W), min_size=N, max_size=N),
)
def test_masks_cancel_and_the_round_completes_with_at_most_n_minus_t_dropouts(
    drops: dict[int, str], vals: list[float], ws: list[float]
) -> None:
    arr = np.asarray(vals, dtype=np.float32).reshape(N, D)
    updates = {s: arr[i] for i, s in enumerate(FED.names)}
    weights = dict(zip(FED.names, ws, strict=True))
    drop = {FED.names[i]: stage for i, stage in drops.items()}
    ctx = FED.ctx(next(_ROUND), D, MAX_W)
    plan = MaskConfig(clip=1.0).plan(
        federation=ctx.federation, round_id=ctx.round, cohort=ctx.cohort
    )
    assert len(drop) <= N - plan.threshold  # t = 4 of 6: two may drop at any stage
    run = run_round(FED, ctx, updates, weights, drop=drop)
    assert run.server_abort is None and not run.aborted
    assert run.result is not None
    want, want_w = plaintext(updates, weights, run.result.survivors, 1.0)
    bound = len(run.result.survivors) * MAX_W / 2**16
    assert np.max(np.abs(run.result.weighted_sum - want)) <= bound
    assert abs(run.result.total_weight - want_w) <= bound


@pytest.mark.parametrize("kind", ["b", "s"])
def test_a_share_shifted_within_the_secret_range_is_caught_and_routed_around(
    tmp_path: Path, kind: str
) -> None:
    """site-00 (share id 1) adds 1 to every ``kind`` share it reveals.

    In the first t-set the server tries, ids {1, 2, 3, 4}, the Lagrange
    coefficient of id 1 is 4: the rebuilt secret is the true one plus 4, in
    range, so nothing but the commitment or the signed key can refuse it.
    The round must route around the share and return the honest sum.
    """
    fed = Federation(tmp_path, 6, MaskConfig(clip=1.0))  # t = 4: 5 responders leave a spare

    def shift(body: dict[str, object]) -> None:
        shares = body[kind]
        assert isinstance(shares, dict) and shares
        for v, share in shares.items():
            shares[v] = ((int.from_bytes(share, "big") + 1) % shamir.PRIME).to_bytes(
                shamir.SHARE_LEN, "big"
            )

    run = quick_round(
        fed, edit_payload(m.UNMASK, shift, sender="site-00"), drop={"site-04": "mask/masked-input"}
    )
    survivors = ("site-00", "site-01", "site-02", "site-03", "site-05")
    assert run.server_abort is None and run.result is not None
    assert run.result.survivors == survivors
    updates = random_updates(fed.names, QUICK_D)  # what quick_round submits, every weight 1
    want, want_w = plaintext(updates, dict.fromkeys(fed.names, 1.0), survivors, 1.0)
    bound = len(survivors) * 100.0 / 2**16  # max_weight 100, clip 1, 16 bits of precision
    assert np.max(np.abs(run.result.weighted_sum - want)) <= bound
    assert abs(run.result.total_weight - want_w) <= bound
