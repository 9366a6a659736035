"""Stochastic rounding for BFV: unbiased, and fresh coin flips on every call."""

from __future__ import annotations

import numpy as np

from securefl.he import _fixed_point


def test_stochastic_rounding_is_unbiased() -> None:
    n = 200_000
    x = np.full(n, 3.25)
    q = _fixed_point.stochastic_round(x)
    assert set(np.unique(q).tolist()) == {3, 4}
    # mean of n Bernoulli(0.25) draws: 5 standard deviations is about 0.005
    assert abs(float(q.mean()) - 3.25) < 5 * np.sqrt(0.25 * 0.75 / n)


def test_uniforms_lie_in_unit_interval_and_differ_between_calls() -> None:
    a, b = _fixed_point._uniform(10_000), _fixed_point._uniform(10_000)
    assert a.min() >= 0.0 and a.max() < 1.0
    assert not np.array_equal(a, b)
