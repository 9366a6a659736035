"""BFV fixed point at its edges: settings refused, known answers, and the centred read-back.

A complete mutation run of ``securefl.he._fixed_point`` found these
unguarded (docs/mutation.md): the read-back of a sum was only ever checked
through an encrypted round far from the wrap limit, and ``quantize`` only
with fresh randomness.
"""

from __future__ import annotations

import numpy as np
import pytest

from securefl.errors import ConfigError, OverflowRefusedError
from securefl.he._fixed_point import dequantize_sum, quantize, stochastic_round

T = 65_537  # a batching prime; t // 2 = 32 768


@pytest.mark.parametrize("clip", [0.0, -1.0, float("inf"), float("nan")])
def test_quantize_refuses_a_clip_that_is_not_positive_and_finite(clip: float) -> None:
    with pytest.raises(ConfigError):
        quantize(np.zeros(3), clip=clip, levels=10)


def test_quantize_refuses_zero_levels_and_takes_one() -> None:
    with pytest.raises(ConfigError):
        quantize(np.zeros(3), clip=1.0, levels=0)
    q = quantize(np.array([-1.0, 0.0, 1.0]), clip=1.0, levels=1)
    np.testing.assert_array_equal(q, [-1, 0, 1])


def test_quantize_known_answers_with_given_uniforms() -> None:
    x = np.array([-5.0, -0.5, -0.26, 0.0, 0.26, 0.5, 5.0])
    # clip 0.5, 4 levels: x·8 clipped to [-4, 4]; -2.08 = -3 + 0.92 and 2.08 = 2 + 0.08
    below = quantize(x, clip=0.5, levels=4, uniform=np.full(7, 0.05))  # u under both: up
    above = quantize(x, clip=0.5, levels=4, uniform=np.full(7, 0.95))  # u over both: down
    assert below.dtype == np.int64
    np.testing.assert_array_equal(below, [-4, -4, -2, 0, 3, 4, 4])
    np.testing.assert_array_equal(above, [-4, -4, -3, 0, 2, 4, 4])


def test_stochastic_rounding_keeps_integers_whatever_the_uniform() -> None:
    x = np.array([-2.0, 0.0, 3.0, 2.5])
    for u in (0.0, 0.5, 1 - 2**-53):
        got = stochastic_round(x, np.full(4, u))
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got[:3], [-2, 0, 3])
    np.testing.assert_array_equal(stochastic_round(x, np.zeros(4))[3], 3)  # 0 < 0.5: up


@pytest.mark.parametrize("value", [-32_767, -20_000, -1, 0, 1, 21_846, 32_767])
def test_a_sum_is_read_back_centred_right_up_to_the_wrap_limit(value: int) -> None:
    """Sums of magnitude up to t//2 - 1 decode exactly, positive and negative."""
    ring = np.array([value % T], dtype=np.int64)
    got = dequantize_sum(ring, clip=2.0, levels=32_767, summands=1, modulus=T)
    np.testing.assert_allclose(got, [value * 2.0 / 32_767], rtol=1e-15)


def test_the_wrap_limit_is_refused_exactly() -> None:
    ok = dequantize_sum(np.zeros(1, np.int64), clip=1.0, levels=16_383, summands=2, modulus=T)
    np.testing.assert_array_equal(ok, [0.0])  # 2 · 16 383 = 32 766 < 32 768
    for summands, levels in ((2, 16_384), (1, 32_768), (0, 1), (-1, 1)):
        with pytest.raises(OverflowRefusedError):
            dequantize_sum(
                np.zeros(1, np.int64), clip=1.0, levels=levels, summands=summands, modulus=T
            )
    one = dequantize_sum(np.array([5], np.int64), clip=1.0, levels=10, summands=1, modulus=T)
    np.testing.assert_allclose(one, [0.5])
