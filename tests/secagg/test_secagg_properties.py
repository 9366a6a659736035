"""Hypothesis properties: masks cancel, any t shares reconstruct, bounds hold, honest sums pass."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from secagg_driver import Federation, plaintext, run_round

from securefl.errors import AbortError, OverflowRefusedError
from securefl.hazmat.quantize import dequantize_sum, quantize
from securefl.secagg import STAGES, MaskConfig
from securefl.secagg._unmask import check_feasible

D = 8
MAX_W = 10.0
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FED = Federation(Path(tempfile.mkdtemp(prefix="secagg-props-")), 6, MaskConfig(clip=1.0))
_ROUND = iter(range(1, 1 << 30))


def _updates(values: list[float]) -> dict[str, np.ndarray]:
    arr = np.asarray(values, dtype=np.float32).reshape(len(FED.names), D)
    return {s: arr[i] for i, s in enumerate(FED.names)}


values = st.lists(st.floats(-2.0, 2.0, width=32), min_size=6 * D, max_size=6 * D)
weights = st.lists(st.floats(0.5, MAX_W), min_size=6, max_size=6)


@SETTINGS
@given(
    drops=st.dictionaries(st.sampled_from(range(6)), st.sampled_from(STAGES)),
    vals=values,
    ws=weights,
)
def test_masks_cancel_for_any_set_of_survivors(
    drops: dict[int, str], vals: list[float], ws: list[float]
) -> None:
    updates = _updates(vals)
    w = dict(zip(FED.names, ws, strict=True))
    drop = {FED.names[i]: stage for i, stage in drops.items()}
    run = run_round(FED, FED.ctx(next(_ROUND), D, MAX_W), updates, w, drop=drop)
    assert not run.aborted  # honest sites never abort under an honest server
    if run.result is None:
        assert run.server_abort is not None
        return
    want, want_w = plaintext(updates, w, run.result.survivors, 1.0)
    bound = len(run.result.survivors) * MAX_W / 2**16
    assert np.max(np.abs(run.result.weighted_sum - want)) <= bound
    assert abs(run.result.total_weight - want_w) <= bound
    masked = STAGES.index("mask/masked-input")
    kept = {s for s in FED.names if s not in drop or STAGES.index(drop[s]) > masked}
    assert set(run.result.survivors) == kept


@SETTINGS
@given(unmask_drops=st.sets(st.sampled_from(range(6)), max_size=5))
def test_any_threshold_of_unmask_shares_reconstructs(unmask_drops: set[int]) -> None:
    """t = 4 of 6 (the default policy at n = 6): any 4 unmask responders recover everything."""
    updates = _updates([0.25] * 6 * D)
    w = dict.fromkeys(FED.names, 1.0)
    drop = {FED.names[i]: "mask/unmask" for i in unmask_drops}
    run = run_round(FED, FED.ctx(next(_ROUND), D, MAX_W), updates, w, drop=drop)
    if 6 - len(unmask_drops) >= 4:
        assert run.result is not None and run.result.survivors == FED.names
        assert np.allclose(run.result.weighted_sum, 6 * 0.25, atol=6 * MAX_W / 2**16)
    else:
        assert run.result is None and run.server_abort is not None


@SETTINGS
@given(val=st.floats(-1.0, 1.0, width=32), w=st.floats(0.01, MAX_W))
def test_quantization_error_is_bounded(val: float, w: float) -> None:
    updates = {s: np.full(D, val, dtype=np.float32) for s in FED.names}
    ws = dict.fromkeys(FED.names, w)
    run = run_round(FED, FED.ctx(next(_ROUND), D, MAX_W), updates, ws)
    assert run.result is not None
    bound = 6 * MAX_W / 2**16  # each site's rounding error is below max_w * clip / 2^p
    assert np.max(np.abs(run.result.weighted_sum - 6 * w * val)) <= bound
    assert abs(run.result.total_weight - 6 * w) <= bound


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(16, 32), precision=st.integers(1, 30), n=st.integers(3, 5000))
def test_overflow_is_refused_exactly_when_the_sum_could_wrap(
    bits: int, precision: int, n: int
) -> None:
    fits = n * ((1 << precision) + 1) <= (1 << (bits - 1)) - 1
    try:
        cfg = MaskConfig(clip=1.0, bits=bits, precision_bits=precision, min_cohort=3)
        q = cfg.quantization(n)
    except OverflowRefusedError:
        assert not fits  # n >= min_cohort, so fitting n also fits the config check
        return
    assert fits and q.bits == bits


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 12),
    precision=st.integers(4, 20),
    clip=st.floats(1e-3, 1e3),
    data=st.data(),
)
def test_honest_inputs_always_pass_the_feasibility_check(
    n: int, precision: int, clip: float, data: st.DataObject
) -> None:
    """Honest encodings at any weight and any (clipped) value: the unmasked sum is feasible.

    Unless the total weight quantizes to zero (only when every weight is a
    tiny fraction of max_weight): that round has no mean and is refused.
    """
    quant = MaskConfig(clip=clip, precision_bits=precision).quantization(max(n, 3))
    fracs = data.draw(
        st.lists(
            st.one_of(st.just(1.0), st.floats(1e-9, 1.0, exclude_min=False)),
            min_size=n,
            max_size=n,
        )
    )
    total = np.zeros(D + 1, dtype=np.uint32)
    for frac in fracs:
        raw = data.draw(
            st.lists(
                st.one_of(st.just(clip), st.just(-clip), st.floats(-4 * clip, 4 * clip)),
                min_size=D,
                max_size=D,
            )
        )
        z = np.empty(D + 1)
        z[0] = frac * clip  # exactly as MaskSite.submit encodes it
        np.clip(np.asarray(raw), -clip, clip, out=z[1:])
        z[1:] *= frac
        np.add(total, quantize(z, quant).astype(np.uint32), out=total)
    summed = dequantize_sum(total & np.uint32(quant.modulus_mask), quant, summands=n)
    if summed[0] == 0:  # every weight rounded to zero: no mean exists, the round is refused
        with pytest.raises(AbortError, match="total weight"):
            check_feasible(summed, quant, summands=n)
        return
    check_feasible(summed, quant, summands=n)  # never raises for honest inputs of some weight


@SETTINGS
@given(
    vals=st.lists(
        st.sampled_from([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0]), min_size=6 * D, max_size=6 * D
    ),
    ws=st.lists(st.sampled_from([1e-4, 0.5, 3.0, MAX_W]), min_size=6, max_size=6),
)
def test_honest_rounds_are_never_rejected(vals: list[float], ws: list[float]) -> None:
    """Whole rounds at extreme values (at and beyond the clip) and weights: always aggregated.

    Six weights of 1e-4 x max_weight sum to less than one quantum and may all
    round to zero: such a round has no mean and is refused (not drawn here).
    """
    assume(max(ws) > 1e-4)
    run = run_round(
        FED, FED.ctx(next(_ROUND), D, MAX_W), _updates(vals), dict(zip(FED.names, ws, strict=True))
    )
    assert run.server_abort is None and not run.aborted and run.result is not None
