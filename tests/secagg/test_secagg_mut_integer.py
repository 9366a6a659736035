"""The integer path's ring and factories at their edges: cases for ``secagg/_integer.py``.

The ring's bound is what the server compares the unmasked sum with; its
limits (1 and 2^(bits-1) - 1) are both valid settings. The integer factories
keep every check of the float path's (the roster key, the cohort) and take
only an :class:`IntegerRing`. See ``docs/mutation.md`` ("secagg/ modules").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from secagg_driver import Federation
from test_secagg_integer import D as ROUND_D
from test_secagg_integer import run_integer_round

from securefl.aggregation.base import RoundContext
from securefl.errors import AbortError, ConfigError, ProtocolError
from securefl.secagg import (
    MASKED_INPUT,
    IntegerMaskServerMode,
    IntegerMaskSite,
    IntegerMaskSiteMode,
    IntegerRing,
    MaskConfig,
)
from securefl.secagg._state import RoundLog
from securefl.wire import SERVER, Envelope

D = 6


@pytest.mark.parametrize("bits", [16, 24, 32])
def test_a_ring_bound_may_be_anything_from_one_to_the_largest_signed_value(bits: int) -> None:
    for bound in (1, (1 << (bits - 1)) - 1):
        assert IntegerRing(bits=bits, magnitude_bound=bound).magnitude_bound == bound


@pytest.mark.parametrize("bits", [20.0, "20", None])
def test_ring_bits_must_be_an_int(bits: object) -> None:
    with pytest.raises(ConfigError):
        IntegerRing(bits=bits, magnitude_bound=100)  # type: ignore[arg-type]


class _Plan:
    def __init__(self, bits: object, magnitude_bound: object) -> None:
        self.bits, self.magnitude_bound = bits, magnitude_bound


@pytest.mark.parametrize(
    "plan", [object(), _Plan(20, None), _Plan(None, 100), _Plan("20", 100), _Plan(20, 1.5)]
)
def test_from_plan_takes_only_a_ring_plan_with_integer_fields(plan: object) -> None:
    with pytest.raises(ConfigError):
        IntegerRing.from_plan(plan)


def test_from_plan_keeps_a_ring_of_sixteen_bits_or_more() -> None:
    ring = IntegerRing.from_plan(_Plan(20, 1000))
    assert (ring.bits, ring.magnitude_bound) == (20, 1000)


def _site_mode(fed: Federation, site: str, ring: object, tmp: Path) -> IntegerMaskSiteMode:
    return IntegerMaskSiteMode(
        site_id=site,
        signing_key=fed.keys[site],
        roster=fed.roster,
        state_path=tmp / f"{site}.json",
        config=fed.config,
        ring=ring,  # type: ignore[arg-type]
    )


def test_the_integer_factories_take_only_an_integer_ring(tmp_path: Path) -> None:
    fed = Federation(tmp_path, 3, MaskConfig(clip=1.0))
    for bad in (None, 24, MaskConfig(clip=1.0)):
        with pytest.raises(ConfigError):
            _site_mode(fed, fed.names[0], bad, tmp_path)
        with pytest.raises(ConfigError):
            IntegerMaskServerMode(roster=fed.roster, config=fed.config, ring=bad)  # type: ignore[arg-type]


def test_the_integer_factories_keep_the_float_paths_checks(tmp_path: Path) -> None:
    """Another site's half, a site outside the cohort, a cohort site without a roster key."""
    fed = Federation(tmp_path, 4, MaskConfig(clip=1.0))
    ring = IntegerRing(bits=24, magnitude_bound=1000)
    mode = _site_mode(fed, fed.names[0], ring, tmp_path)
    ctx = fed.ctx(1, D)
    with pytest.raises(ConfigError):
        mode.site(ctx, fed.names[1])  # this mode holds only site-00's key
    outside = RoundContext(
        federation="fed",
        round=1,
        cohort=fed.names[1:],
        dimension=D,
        max_weight=1.0,
        round_digest=ctx.round_digest,
    )
    with pytest.raises(ConfigError):
        mode.site(outside, fed.names[0])
    stranger = RoundContext(
        federation="fed",
        round=1,
        cohort=(*fed.names, "site-99"),
        dimension=D,
        max_weight=1.0,
        round_digest=ctx.round_digest,
    )
    with pytest.raises(ConfigError):
        mode.site(stranger, fed.names[0])
    server_mode = IntegerMaskServerMode(roster=fed.roster, config=fed.config, ring=ring)
    with pytest.raises(ConfigError):
        server_mode.server(stranger)


def test_an_integer_site_masks_one_update_per_round(tmp_path: Path) -> None:
    fed = Federation(tmp_path, 3, MaskConfig(clip=1.0))
    ring = IntegerRing(bits=24, magnitude_bound=1000)
    half = _site_mode(fed, fed.names[0], ring, tmp_path).site(fed.ctx(1, D), fed.names[0])
    assert isinstance(half, IntegerMaskSite)
    assert half.submit_integers(np.zeros(D, dtype=np.int64))
    with pytest.raises(ProtocolError):
        half.submit_integers(np.ones(D, dtype=np.int64))


def test_an_integer_site_claims_its_federation_run_and_round_before_sending(
    tmp_path: Path,
) -> None:
    """The round log, not the caller, stops a second masking under one round name."""
    fed = Federation(tmp_path, 3, MaskConfig(clip=1.0))
    ring = IntegerRing(bits=24, magnitude_bound=1000)
    site = fed.names[0]
    mode = _site_mode(fed, site, ring, tmp_path)
    ctx = dataclasses.replace(fed.ctx(4, D), run="run-a")
    half = mode.site(ctx, site)
    assert isinstance(half, IntegerMaskSite)
    half.submit_integers(np.zeros(D, dtype=np.int64))
    assert RoundLog(tmp_path / f"{site}.json").used("fed", 4, "run-a")
    replay = mode.site(ctx, site)  # the same round start again (a replay, a restart)
    assert isinstance(replay, IntegerMaskSite)
    with pytest.raises(AbortError):
        replay.submit_integers(np.ones(D, dtype=np.int64))
    for other in (dataclasses.replace(ctx, round=5), dataclasses.replace(ctx, run="run-b")):
        fresh = mode.site(other, site)
        assert isinstance(fresh, IntegerMaskSite)
        assert fresh.submit_integers(np.ones(D, dtype=np.int64))


def test_a_finished_integer_round_reports_exact_integers_and_takes_no_more(
    tmp_path: Path,
) -> None:
    fed = Federation(tmp_path, 4, MaskConfig(clip=1.0))
    values = {s: np.full(ROUND_D, i - 2, dtype=np.int64) for i, s in enumerate(fed.names)}
    out = run_integer_round(fed, IntegerRing(bits=24, magnitude_bound=1000), values)
    got, result = out.server.integer_result, out.server.result
    assert got is not None and result is not None and out.server_abort is None
    assert got.values.dtype == np.int64 and set(got.values.tolist()) == {-2}
    assert got.survivors == result.survivors == fed.names
    assert out.server.stage == "done"
    late = Envelope(
        federation="fed",
        round=1,
        stage=MASKED_INPUT,
        sender=fed.names[0],
        receiver=SERVER,
        payload=b"",
    )
    with pytest.raises(ProtocolError):
        out.server.handle(late)
    assert out.server.on_deadline() == []


def test_a_refused_integer_sum_leaves_the_round_aborted(tmp_path: Path) -> None:
    fed = Federation(tmp_path, 4, MaskConfig(clip=1.0))
    values = {s: np.full(ROUND_D, 500, dtype=np.int64) for s in fed.names}  # 2,000 > 1,000
    out = run_integer_round(fed, IntegerRing(bits=24, magnitude_bound=1000), values)
    assert out.server_abort is not None and out.server.integer_result is None
    assert out.server.stage == "aborted"
    late = Envelope(
        federation="fed",
        round=1,
        stage=MASKED_INPUT,
        sender=fed.names[0],
        receiver=SERVER,
        payload=b"",
    )
    with pytest.raises(ProtocolError):
        out.server.handle(late)
