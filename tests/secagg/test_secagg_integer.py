"""SecAgg+ on integer inputs: masks cancel, dropouts are recovered, a wrap is refused.

The integer path carries the distributed-DP vectors: no weight slot, no clip
of the noisy share, a ring from the ring plan. Its protocol stages are the
float path's (whose tests keep running unchanged); these tests drive whole
rounds through the sans-IO halves and play a site that sends more than an
honest one can.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from secagg_driver import Federation

from securefl.aggregation.base import RoundContext
from securefl.dp.distributed import RingPlan
from securefl.errors import AbortError, ConfigError, ProtocolError
from securefl.secagg import (
    MASKED_INPUT,
    STAGES,
    IntegerMaskServer,
    IntegerMaskServerMode,
    IntegerMaskSite,
    IntegerMaskSiteMode,
    IntegerRing,
    MaskConfig,
)
from securefl.wire import SERVER, Envelope, unpack

D = 40


class Outcome:
    def __init__(self, server: IntegerMaskServer) -> None:
        self.server = server
        self.server_abort: AbortError | None = None
        self.masked: dict[str, bytes] = {}


def run_integer_round(
    fed: Federation,
    ring: IntegerRing,
    values: dict[str, npt.NDArray[np.int64]],
    *,
    round_id: int = 1,
    drop: dict[str, str] | None = None,
) -> Outcome:
    """One integer round; ``drop`` silences a site from a site-to-server stage on."""
    drop = drop or {}
    ctx = fed.ctx(round_id, D)
    server_half = IntegerMaskServerMode(roster=fed.roster, config=fed.config, ring=ring).server(
        RoundContext(
            federation=ctx.federation,
            round=ctx.round,
            cohort=ctx.cohort,
            dimension=ctx.dimension,
            max_weight=ctx.max_weight,
        )
    )
    assert isinstance(server_half, IntegerMaskServer)
    out = Outcome(server_half)
    sites: dict[str, IntegerMaskSite] = {}
    outbox: list[Envelope] = []
    for s in fed.names:
        mode = IntegerMaskSiteMode(
            site_id=s,
            signing_key=fed.keys[s],
            roster=fed.roster,
            state_path=fed.tmp / f"{s}.json",
            config=fed.config,
            ring=ring,
        )
        half = mode.site(ctx, s)
        assert isinstance(half, IntegerMaskSite)
        sites[s] = half
        outbox += half.submit_integers(values[s])
    try:
        while out.server.integer_result is None:
            if not outbox:
                outbox += out.server.on_deadline()
                continue
            env = outbox.pop(0)
            if env.receiver == SERVER:
                cut = drop.get(env.sender)
                if cut is not None and STAGES.index(env.stage) >= STAGES.index(cut):
                    continue
                if env.stage == MASKED_INPUT:
                    out.masked[env.sender] = env.payload
                outbox += out.server.handle(env)
            else:
                outbox += sites[env.receiver].handle(env)
    except AbortError as exc:
        out.server_abort = exc
    return out


def federation(tmp: Path, n: int = 5) -> Federation:
    return Federation(tmp, n, MaskConfig(clip=1.0))


def inputs(names: tuple[str, ...], seed: int, spread: int) -> dict[str, npt.NDArray[np.int64]]:
    """Test inputs (not keys or masks), so a seeded NumPy generator is fine."""
    rng = np.random.default_rng(seed)
    return {s: rng.integers(-spread, spread + 1, size=D, dtype=np.int64) for s in names}


# ------------------------------------------------------------ masks cancel


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(3, 6),
    bits=st.sampled_from([16, 20, 24, 32]),
    seed=st.integers(0, 2**32 - 1),
)
def test_masks_cancel_for_integer_inputs(n: int, bits: int, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fed = federation(Path(tmp), n)
        bound = (1 << (bits - 1)) - 1
        values = inputs(fed.names, seed, bound // n)
        ring = IntegerRing(bits=bits, magnitude_bound=bound)
        out = run_integer_round(fed, ring, values)
        assert out.server_abort is None
        got = out.server.integer_result
        assert got is not None and got.bits == bits
        assert got.values.tolist() == sum(values.values()).tolist()  # type: ignore[union-attr]
        assert out.server.result is not None
        assert out.server.result.mean().tolist() == got.values.astype(float).tolist()


def test_no_weight_slot_goes_on_the_wire(tmp_path: Path) -> None:
    fed = federation(tmp_path)
    out = run_integer_round(
        fed, IntegerRing(bits=24, magnitude_bound=10**6), inputs(fed.names, 1, 99)
    )
    for payload in out.masked.values():
        body = unpack(payload)
        assert body["n"] == D and body["bits"] == 24


def test_a_masked_input_is_not_the_input(tmp_path: Path) -> None:
    fed = federation(tmp_path)
    values = inputs(fed.names, 2, 5)
    out = run_integer_round(fed, IntegerRing(bits=32, magnitude_bound=10**6), values)
    s = fed.names[0]
    sent = np.frombuffer(unpack(out.masked[s])["y"], dtype="<u4")
    assert np.count_nonzero(sent == (values[s] & 0xFFFFFFFF).astype(np.uint32)) < 3


# ------------------------------------------------------------ dropouts


@pytest.mark.parametrize("stage", ["mask/share", "mask/masked-input", "mask/consistency"])
def test_a_dropped_sites_masks_are_removed(tmp_path: Path, stage: str) -> None:
    fed = federation(tmp_path)
    values = inputs(fed.names, 3, 1000)
    gone = fed.names[2]
    out = run_integer_round(
        fed, IntegerRing(bits=24, magnitude_bound=10**6), values, drop={gone: stage}
    )
    assert out.server_abort is None
    got = out.server.integer_result
    assert got is not None
    survivors = [s for s in fed.names if stage == "mask/consistency" or s != gone]
    assert got.survivors == tuple(survivors)
    assert got.values.tolist() == sum(values[s] for s in survivors).tolist()  # type: ignore[union-attr]


def test_too_few_survivors_abort(tmp_path: Path) -> None:
    fed = federation(tmp_path)
    drops = dict.fromkeys(fed.names[:3], "mask/masked-input")
    out = run_integer_round(
        fed, IntegerRing(bits=24, magnitude_bound=10**6), inputs(fed.names, 4, 9), drop=drops
    )
    assert out.server_abort is not None and out.server.integer_result is None


# ------------------------------------------------------------ wraps and oversized inputs


def test_a_wrapped_sum_is_refused_not_returned(tmp_path: Path) -> None:
    """The true sum leaves the signed 16-bit range: the server refuses, it never decodes it.

    35,000 wraps to -30,536, beyond the bound 30,000. (A sum of 2^16 - 30,000
    or more would wrap back inside the bound: the docs bound that excursion's
    probability by the same tail as the wrap itself.)
    """
    fed = federation(tmp_path)
    values = {s: np.full(D, 7_000, dtype=np.int64) for s in fed.names}  # sum 35,000 > 32,767
    out = run_integer_round(fed, IntegerRing(bits=16, magnitude_bound=30_000), values)
    assert out.server_abort is not None and "wrapped" in str(out.server_abort)
    assert out.server.integer_result is None and out.server.result is None


def test_a_site_sending_more_than_clipping_allows_is_refused(tmp_path: Path) -> None:
    """A cheating site adds a large value; the sum stays in the ring but beyond the plan's bound."""
    fed = federation(tmp_path)
    values = inputs(fed.names, 5, 100)
    honest_peak = int(np.abs(sum(values.values())).max())  # type: ignore[call-overload]
    values[fed.names[0]] = values[fed.names[0]].copy()
    values[fed.names[0]][7] += 500_000
    ring = IntegerRing(bits=24, magnitude_bound=max(honest_peak, 1000))
    out = run_integer_round(fed, ring, values)
    assert out.server_abort is not None
    assert out.server.integer_result is None


def test_the_largest_honest_sum_is_accepted(tmp_path: Path) -> None:
    fed = federation(tmp_path)
    values = {s: np.full(D, -6_000, dtype=np.int64) for s in fed.names}  # sum -30,000
    out = run_integer_round(fed, IntegerRing(bits=16, magnitude_bound=30_000), values)
    got = out.server.integer_result
    assert got is not None and set(got.values.tolist()) == {-30_000}


# ------------------------------------------------------------ refusals


def test_the_float_submit_is_refused_on_the_integer_path(tmp_path: Path) -> None:
    fed = federation(tmp_path)
    ring = IntegerRing(bits=24, magnitude_bound=100)
    mode = IntegerMaskSiteMode(
        site_id=fed.names[0],
        signing_key=fed.keys[fed.names[0]],
        roster=fed.roster,
        state_path=tmp_path / "s.json",
        config=fed.config,
        ring=ring,
    )
    half = mode.site(fed.ctx(1, D), fed.names[0])
    assert isinstance(half, IntegerMaskSite)
    with pytest.raises(ProtocolError):
        half.submit(np.zeros(D, dtype=np.float32), 1.0)
    for bad in (np.zeros(D), np.zeros(D + 1, dtype=np.int64), np.zeros(D, dtype=np.uint64)):
        with pytest.raises(ProtocolError):
            half.submit_integers(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bits", "bound"), [(15, 10), (33, 10), (16, 0), (16, 1 << 15), (True, 10), (24, 1.5)]
)
def test_a_bad_ring_is_refused(bits: object, bound: object) -> None:
    with pytest.raises(ConfigError):
        IntegerRing(bits=bits, magnitude_bound=bound)  # type: ignore[arg-type]


def test_a_ring_plan_becomes_a_ring() -> None:
    ring = IntegerRing.from_plan(RingPlan(bits=12, magnitude_bound=2000, wrap_bound=1e-20))
    assert ring.bits == 16 and ring.magnitude_bound == 2000
