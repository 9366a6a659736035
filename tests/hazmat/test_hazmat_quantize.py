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
