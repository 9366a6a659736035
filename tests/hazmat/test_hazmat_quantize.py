"""Quantization into Z_2^bits: known answers, refusals, error bound, overflow safety."""

from __future__ import annotations

import dataclasses
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.errors import ConfigError, DataError, OverflowRefusedError, ProtocolError
from securefl.hazmat.prg import add_mask
from securefl.hazmat.quantize import (
    QuantizationParams,
    _quantize_from_parts,
    dequantize_sum,
    quantize,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "hazmat_quantize.json").read_text())


@pytest.mark.parametrize("v", VECTORS["quantize"], ids=lambda v: f"b{v['bits']}")
def test_quantize_from_parts_known_answers(v: dict) -> None:
    p = QuantizationParams(
        clip=v["clip"],
        bits=v["bits"],
        max_summands=v["max_summands"],
        precision_bits=v["precision_bits"],
    )
    assert p.scale == v["scale"]
    q = _quantize_from_parts(
        np.array(v["x_float32"], np.float32), p, np.array(v["uniforms"], np.float64)
    )
    assert q.dtype == (np.uint32 if v["bits"] <= 32 else np.uint64)
    assert q.tolist() == [int(w) for w in v["q"]]


def test_params_are_frozen_and_keyword_only() -> None:
    p = QuantizationParams(clip=1.0, bits=32, max_summands=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.bits = 16  # type: ignore[misc]
    with pytest.raises(TypeError):
        QuantizationParams(1.0, 32, 10)  # type: ignore[misc]


def test_overflow_config_refused() -> None:
    with pytest.raises(OverflowRefusedError):
        QuantizationParams(clip=1.0, bits=16, max_summands=1000, precision_bits=8)
    with pytest.raises(OverflowRefusedError):
        QuantizationParams(clip=1.0, bits=16, max_summands=2**15)
    with pytest.raises(OverflowRefusedError):
        QuantizationParams.for_sum(clip=1.0, max_summands=2**30, target_bits_of_precision=40)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(1e-3, 1e3),
    st.integers(16, 62),
    st.integers(1, 2**20),
    st.integers(1, 40),
)
def test_overflow_refused_exactly_when_the_worst_sum_leaves_the_signed_range(
    clip: float, bits: int, max_summands: int, precision: int
) -> None:
    signed_max = 2 ** (bits - 1) - 1
    # The scale the docs promise: the power of two putting clip in (2**(p-1), 2**p].
    e = -20
    while Fraction(2) ** e < Fraction(clip):  # exact ceil(log2(clip))
        e += 1
    scale = Fraction(2) ** (precision - e)
    worst = max_summands * (math.floor(Fraction(clip) * scale) + 1)  # rounded up at the bound
    try:
        p = QuantizationParams(
            clip=clip, bits=bits, max_summands=max_summands, precision_bits=precision
        )
    except OverflowRefusedError:
        assert worst > signed_max
        return
    assert Fraction(p.scale) == scale
    assert 2 ** (precision - 1) < Fraction(clip) * scale <= 2**precision
    assert worst <= signed_max
    assert max_summands * clip * p.scale <= signed_max


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_error_per_value_is_below_one_over_scale(data: st.DataObject) -> None:
    clip = data.draw(st.floats(2.0**-7, 2.0**7, width=32))
    bits = data.draw(st.integers(16, 62))
    n = data.draw(st.integers(1, 2**10))
    p = QuantizationParams.for_sum(clip=clip, max_summands=n, bits=bits)
    x = np.array(
        data.draw(st.lists(st.floats(-clip, clip, width=32), min_size=1, max_size=50)), np.float32
    )
    got = dequantize_sum(quantize(x, p), p, summands=1)
    assert np.all(np.abs(got - x.astype(np.float64)) <= 1 / p.scale)


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_masked_sum_of_quantized_values_decodes_within_bound(data: st.DataObject) -> None:
    clip = 1.0
    k = data.draw(st.integers(1, 8))
    p = QuantizationParams.for_sum(
        clip=clip, max_summands=k, bits=data.draw(st.sampled_from([20, 32, 48]))
    )
    d = data.draw(st.integers(1, 40))
    xs = [
        np.array(
            data.draw(st.lists(st.floats(-clip, clip, width=32), min_size=d, max_size=d)),
            np.float32,
        )
        for _ in range(k)
    ]
    seeds = [bytes([i]) * 32 for i in range(k)]
    total = np.zeros(d, p.dtype)
    for i, x in enumerate(xs):
        y = quantize(x, p)
        add_mask(y, seeds[i], bits=p.bits)  # site i adds +m_i ...
        add_mask(y, seeds[(i + 1) % k], sign=-1, bits=p.bits)  # ... and -m_{i+1}
        total += y
    got = dequantize_sum(total, p, summands=k)
    want = np.sum([x.astype(np.float64) for x in xs], axis=0)
    assert np.all(np.abs(got - want) <= k / p.scale)


def test_stochastic_rounding_is_unbiased() -> None:
    p = QuantizationParams(clip=1.0, bits=32, max_summands=1, precision_bits=2)  # scale 4
    x = np.full(20_000, 0.1, np.float32)  # 0.4 steps: rounds up 40% of the time
    q = dequantize_sum(quantize(x, p), p, summands=1)
    assert set(np.unique(q).tolist()) == {0.0, 0.25}
    assert abs(float(q.mean()) - float(np.float32(0.1))) < 0.01  # 5+ sigma


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_refused(bad: float) -> None:
    p = QuantizationParams(clip=1.0, bits=32, max_summands=10)
    with pytest.raises(DataError):
        quantize(np.array([0.0, bad], np.float32), p)


def test_values_beyond_clip_refused() -> None:
    p = QuantizationParams(clip=1.0, bits=32, max_summands=10)
    with pytest.raises(DataError):
        quantize(np.array([0.5, -1.0001], np.float32), p)
    with pytest.raises(DataError):
        quantize(np.array([1, 2], np.int64), p)  # type: ignore[arg-type]
    quantize(np.array([1.0, -1.0], np.float32), p)  # the bound itself is allowed


def test_dequantize_refuses_more_summands_than_configured() -> None:
    p = QuantizationParams(clip=1.0, bits=32, max_summands=4)
    with pytest.raises(OverflowRefusedError):
        dequantize_sum(np.zeros(3, np.uint32), p, summands=5)


def test_dequantize_detects_uncancelled_masks() -> None:
    p = QuantizationParams(clip=1.0, bits=32, max_summands=4, precision_bits=8)
    total = quantize(np.zeros(1000, np.float32), p)
    add_mask(total, bytes(32), bits=32)
    with pytest.raises(ProtocolError):
        dequantize_sum(total, p, summands=1)


def test_for_sum_picks_the_smallest_safe_ring() -> None:
    p = QuantizationParams.for_sum(clip=1.0, max_summands=1000, target_bits_of_precision=20)
    assert p.precision_bits == 20
    assert p.bits == 31  # 1000 * (2**20 + 1) needs 30 bits, plus a sign bit
    with pytest.raises(OverflowRefusedError):
        QuantizationParams(clip=1.0, bits=p.bits - 1, max_summands=1000, precision_bits=20)
    small = QuantizationParams.for_sum(clip=1.0, max_summands=2, target_bits_of_precision=4)
    assert small.bits == 16 and small.dtype == np.uint32
    with pytest.raises(ConfigError):
        QuantizationParams.for_sum(clip=1.0, max_summands=2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clip": 0.0},
        {"clip": float("nan")},
        {"clip": float("inf")},
        {"bits": 15},
        {"bits": 63},
        {"max_summands": 0},
        {"precision_bits": 0},
        {"precision_bits": 41},
    ],
)
def test_invalid_params_refused(kwargs: dict) -> None:
    base = {"clip": 1.0, "bits": 32, "max_summands": 10} | kwargs
    with pytest.raises(ConfigError):
        QuantizationParams(**base)


def test_bits_pick_the_storage_dtype() -> None:
    assert QuantizationParams(clip=1.0, bits=32, max_summands=2).dtype == np.uint32
    assert QuantizationParams(clip=1.0, bits=33, max_summands=2).dtype == np.uint64


# -- boundaries mutation testing showed unguarded (docs/mutation.md) ---------------


def test_vector_longer_than_one_rounding_chunk_is_rounded_coordinate_by_coordinate() -> None:
    params = QuantizationParams.for_sum(clip=1.0, max_summands=4, bits=32)
    # Fresh values each run: memory left by an earlier call must not pass for output.
    x = np.random.default_rng().uniform(-1.0, 1.0, 3 * (1 << 16) + 5)
    q = quantize(x, params)
    signed = dequantize_sum(q, params, summands=1)
    # Stochastic rounding moves each value by less than one step, never further.
    assert np.max(np.abs(signed - x)) <= 1 / params.scale


@pytest.mark.parametrize("side", [-1, 1])
def test_a_sum_beyond_the_bound_on_either_side_is_refused(side: int) -> None:
    params = QuantizationParams.for_sum(clip=1.0, max_summands=4, bits=32)
    bound = 2 * params.value_bound
    ring = (1 << params.bits) - 1
    edge = np.array([bound, -bound & ring, 0], dtype=params.dtype)
    assert np.array_equal(
        dequantize_sum(edge, params, summands=2) * params.scale, [bound, -bound, 0]
    )
    beyond = np.array([(side * (bound + 1)) & ring, 0], dtype=params.dtype)
    with pytest.raises(ProtocolError):
        dequantize_sum(beyond, params, summands=2)


# -- second mutation run (docs/mutation.md, hazmat/quantize.py) --------------------


@pytest.mark.parametrize("clip", [True, "1.0", None, [1.0]])
def test_a_clip_that_is_not_a_number_is_refused(clip: object) -> None:
    with pytest.raises(ConfigError):
        QuantizationParams(clip=clip, bits=32, max_summands=2)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["bits", "max_summands"])
@pytest.mark.parametrize("bad", [True, 20.0, "20"])
def test_integer_settings_must_be_ints_not_bools_or_floats(field: str, bad: object) -> None:
    kwargs = {"clip": 1.0, "bits": 32, "max_summands": 2, field: bad}
    with pytest.raises(ConfigError):
        QuantizationParams(**kwargs)  # type: ignore[arg-type]


def test_normalised_fields_are_stored_as_declared() -> None:
    p = QuantizationParams(clip=1, bits=32, max_summands=2)
    assert type(p.clip) is float and p.clip == 1.0
    assert _is_int_like(p.precision_bits) and p.precision_bits >= 1


def _is_int_like(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def test_a_ring_filled_to_its_last_value_is_accepted_and_decodes() -> None:
    """max_summands · value_bound == 2**(bits-1) - 1 exactly: the sum still fits."""
    clip = 32766 / 32768  # clip · 2**15 = 32766, so value_bound = 32767 = 2**15 - 1
    p = QuantizationParams(clip=clip, bits=16, max_summands=1, precision_bits=15)
    assert p.value_bound == 2**15 - 1
    x = np.array([clip, -clip, 0.5], np.float64)
    u = np.full(3, 1 - 2**-52)
    q = _quantize_from_parts(x, p, u)
    np.testing.assert_allclose(dequantize_sum(q, p, summands=1), x, atol=1 / p.scale)
    with pytest.raises(OverflowRefusedError):  # one more value of room is needed for 2
        QuantizationParams(clip=clip, bits=16, max_summands=2, precision_bits=15)


def test_a_ring_with_room_only_for_one_bit_of_precision_gets_it() -> None:
    # clip 1.0: precision 1 bounds |q| by 3, precision 2 by 5; 10 000 · 3 fits 2**15 - 1, · 5 not
    p = QuantizationParams(clip=1.0, bits=16, max_summands=10_000)
    assert p.precision_bits == 1 and p.value_bound == 3
    total = quantize(np.full(4, 1.0), p) * np.uint32(10_000) & np.uint32(p.modulus_mask)
    np.testing.assert_array_equal(dequantize_sum(total, p, summands=10_000), np.full(4, 10_000.0))


@pytest.mark.parametrize(
    ("clip", "max_summands", "bits"),
    [(1.0, 3, 16), (0.3, 1000, 32), (5.0, 7, 24), (1e-3, 2**20, 62), (2.5, 100, 40), (1.0, 1, 17)],
)
def test_the_precision_chosen_for_a_ring_is_the_finest_that_fits(
    clip: float, max_summands: int, bits: int
) -> None:
    p = QuantizationParams(clip=clip, bits=bits, max_summands=max_summands)
    assert p.precision_bits is not None
    if p.precision_bits < 40:
        with pytest.raises(OverflowRefusedError):
            QuantizationParams(
                clip=clip, bits=bits, max_summands=max_summands, precision_bits=p.precision_bits + 1
            )


@pytest.mark.parametrize("clip", [0.3, 1.7, 1e-3, 123.456])
def test_value_bound_is_the_largest_quantized_value_an_input_can_reach(clip: float) -> None:
    p = QuantizationParams(clip=clip, bits=32, max_summands=4)
    at_clip = np.array([clip, -clip])
    top = _quantize_from_parts(at_clip, p, np.full(2, 1 - 2**-52))
    low = _quantize_from_parts(at_clip, p, np.zeros(2))
    signed = dequantize_sum(top, p, summands=1) * p.scale
    assert signed[0] == p.value_bound  # clip · scale is not an integer here: rounded up
    assert -dequantize_sum(low, p, summands=1)[1] * p.scale == p.value_bound


def test_rounding_uniforms_of_the_known_answer_helper_must_lie_in_zero_one() -> None:
    p = QuantizationParams(clip=1.0, bits=32, max_summands=2)
    x = np.array([0.25, -0.5])
    assert _quantize_from_parts(x, p, np.zeros(2)).shape == (2,)
    for bad in ([0.0, 1.0], [0.0, 1.5], [-0.1, 0.0], [0.0, float("nan")], [0.0, 0.5, 0.5]):
        with pytest.raises(ConfigError):
            _quantize_from_parts(x, p, np.array(bad))


def test_quantize_keeps_the_shape_of_a_matrix() -> None:
    p = QuantizationParams(clip=1.0, bits=32, max_summands=2)
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    u = np.linspace(0, 0.9, 12).reshape(3, 4)
    known = _quantize_from_parts(x, p, u)
    assert known.shape == (3, 4)
    np.testing.assert_array_equal(
        known.reshape(-1), _quantize_from_parts(x.reshape(-1), p, u.reshape(-1))
    )
    q = quantize(x, p)
    assert q.shape == (3, 4)
    assert np.max(np.abs(dequantize_sum(q, p, summands=1) - x)) <= 1 / p.scale


@pytest.mark.parametrize("bad", [np.array([1, 0], np.int64), np.array([True]), [0.5, 0.25]])
def test_quantize_takes_only_float_arrays(bad: object) -> None:
    p = QuantizationParams(clip=1.0, bits=32, max_summands=2)
    with pytest.raises(DataError):
        quantize(bad, p)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [np.array([1], np.int64), np.array([1.0]), [1, 2]])
def test_dequantize_takes_only_unsigned_ring_arrays(bad: object) -> None:
    p = QuantizationParams(clip=1.0, bits=32, max_summands=2)
    with pytest.raises(DataError):
        dequantize_sum(bad, p, summands=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("summands", [0, -1, True, 1.0])
def test_dequantize_refuses_a_summand_count_that_is_not_a_positive_int(summands: object) -> None:
    p = QuantizationParams(clip=1.0, bits=32, max_summands=2)
    with pytest.raises(ConfigError):
        dequantize_sum(np.zeros(2, np.uint32), p, summands=summands)  # type: ignore[arg-type]


@pytest.mark.parametrize("bits", [17, 24, 32, 33])
def test_a_ring_element_decodes_the_same_from_uint32_or_uint64_storage(bits: int) -> None:
    p = QuantizationParams(clip=1.0, bits=bits, max_summands=4)
    values = np.array([-3 * p.value_bound, -1, 0, 1, 2 * p.value_bound])
    ring = values & ((1 << bits) - 1)
    small = ring[ring < 2**32]  # what a uint32 can hold of this ring
    expected = values[ring < 2**32] / p.scale
    for dtype in (np.uint32, np.uint64):
        np.testing.assert_array_equal(dequantize_sum(small.astype(dtype), p, summands=4), expected)


@pytest.mark.parametrize("target", [True, 2.0, "8", 0, 41])
def test_for_sum_refuses_a_precision_that_is_not_an_int_in_range(target: object) -> None:
    with pytest.raises(ConfigError):
        QuantizationParams.for_sum(clip=1.0, max_summands=2, target_bits_of_precision=target)  # type: ignore[arg-type]


def test_for_sum_keeps_the_requested_precision_at_the_edges() -> None:
    one = QuantizationParams.for_sum(clip=1.0, max_summands=1, target_bits_of_precision=1)
    assert (one.precision_bits, one.bits, one.max_summands) == (1, 16, 1)
    # a small request in a roomy ring: the precision is the one asked for, not the finest
    p = QuantizationParams.for_sum(clip=1.0, max_summands=3, target_bits_of_precision=10)
    assert p.precision_bits == 10 and p.bits == 16
    # 2**20 · (2**40 + 1) has 61 bits: with the sign bit the largest ring, 2**62, is exactly enough
    top = QuantizationParams.for_sum(clip=1.0, max_summands=2**20, target_bits_of_precision=40)
    assert top.bits == 62 and top.precision_bits == 40
    with pytest.raises(OverflowRefusedError):
        QuantizationParams.for_sum(clip=1.0, max_summands=2**21, target_bits_of_precision=40)
