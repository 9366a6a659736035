"""The exact samplers at their edges: rejection, thresholds, input checks, mixed denominators.

The rejection branches of ``below`` and ``coins`` run with probability about
m/2^64 per draw, so a sample from a real keystream never reaches them. Here a
keystream with scripted words drives each comparison to its boundary: a
word equal to the rejection limit must be redrawn, a word one below the
coin threshold is heads and the threshold itself is tails. Everything else
draws from fixed keys, so each test is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from securefl.errors import ConfigError
from securefl.hazmat.dgauss import (
    MAX_BASE_VARIANCE,
    KeystreamRng,
    bernoulli_exp,
    bernoulli_rate,
    discrete_gaussian,
    plan_variance,
)

U64_MAX = 2**64 - 1


class ScriptedRng(KeystreamRng):
    """A keystream whose words are given in advance (to reach the rare branches)."""

    def __init__(self, words: list[int]) -> None:
        super().__init__(bytes(32))
        self._script = list(words)

    def words(self, n: int) -> np.ndarray:
        taken, self._script = self._script[:n], self._script[n:]
        assert len(taken) == n, "the test scripted too few words"
        return np.array(taken, dtype=np.uint64)


def fixed(label: str) -> KeystreamRng:
    return KeystreamRng((label.encode() * 32)[:32])


# ------------------------------------------------------------ below(): rejection


def test_below_redraws_a_word_equal_to_the_limit_and_keeps_one_just_under_it() -> None:
    m = 3 * 2**62  # one multiple fits in 64 bits: the limit is m itself
    rng = ScriptedRng([m, 7, m - 1])
    out = rng.below(np.array([m, 5], dtype=np.uint64))
    # word m (== limit) is rejected and redrawn (-> m - 1); word 7 is kept (7 % 5)
    assert out.tolist() == [m - 1, 2]
    assert out.dtype == np.uint64


def test_below_redraws_until_every_word_is_under_its_limit() -> None:
    m = 3 * 2**62
    # first draw: both above; first redraw: the first still at the limit; then done
    rng = ScriptedRng([U64_MAX, m + 1, m, 4, 9])
    out = rng.below(np.array([m, m], dtype=np.uint64))
    assert out.tolist() == [9, 4]


def test_below_is_uniform_for_a_bound_with_a_large_rejection_zone() -> None:
    # m = 3·2^62: a quarter of the words are rejected. Folding them back instead
    # (modulo bias) would put half of the results below 2^62 instead of a third.
    m = 3 * 2**62
    out = fixed("below-uniform").below(np.full(6000, m, dtype=np.uint64))
    low = float(np.mean(out < np.uint64(2**62)))
    assert abs(low - 1 / 3) < 5 * math.sqrt((1 / 3) * (2 / 3) / 6000)


def test_below_takes_a_list_of_ints_and_gives_the_same_uint64_values() -> None:
    bounds = [5, 2**40 + 3, 1, 3 * 2**62]
    a = fixed("below-list").below(bounds)  # type: ignore[arg-type]
    b = fixed("below-list").below(np.array(bounds, dtype=np.uint64))
    assert a.dtype == np.uint64
    assert a.tolist() == b.tolist()
    assert all(int(v) < m for v, m in zip(a.tolist(), bounds, strict=True))


# ------------------------------------------------------------ coins(): thresholds


def _coin_words(den: int, num: int) -> tuple[int, int]:
    block = U64_MAX // den
    return num * block - 1, num * block


@pytest.mark.parametrize("shared", [True, False])
def test_a_coin_is_heads_just_below_its_threshold_and_tails_at_it(shared: bool) -> None:
    den, num = 3, 1
    below_, at = _coin_words(den, num)
    rng = ScriptedRng([below_, at])
    d = den if shared else np.full(2, den, dtype=np.uint64)
    out = rng.coins(np.full(2, num, dtype=np.uint64), d)
    assert out.tolist() == [True, False]


@pytest.mark.parametrize("shared", [True, False])
def test_a_coin_word_at_or_above_the_rejection_limit_is_redrawn(shared: bool) -> None:
    den = 5  # 5 divides 2^64 - 1, so the limit is 2^64 - 1 itself
    block = U64_MAX // den
    limit = block * den
    assert limit == U64_MAX
    # 2^64 - 2 is below the limit: kept, and tails (>= 1·block). U64_MAX is the
    # limit: redrawn, the redraw 0 is heads.
    rng = ScriptedRng([limit - 1, limit, 0])
    d = den if shared else np.full(2, den, dtype=np.uint64)
    out = rng.coins(np.ones(2, dtype=np.uint64), d)
    assert out.tolist() == [False, True]


def test_a_redrawn_coin_word_equal_to_the_limit_is_redrawn_again() -> None:
    den = 7
    block = U64_MAX // den
    limit = block * den  # 2^64 - 1 - (2^64 - 1) % 7
    rng = ScriptedRng([limit, limit, limit + 1, block - 1])
    out = rng.coins(np.ones(1, dtype=np.uint64), den)
    assert out.tolist() == [True]


# ------------------------------------------------------------ bernoulli_rate()


def test_poisson_coins_compare_with_the_exact_threshold() -> None:
    # rate 1/2: threshold 2^63; word 2^63 - 1 is kept, 2^63 is not
    out = bernoulli_rate(ScriptedRng([2**63 - 1, 2**63]), 2, 0.5)
    assert out.tolist() == [True, False]


def test_rate_one_keeps_every_record_and_zero_records_give_an_empty_mask() -> None:
    everyone = bernoulli_rate(fixed("rate-one"), 5, 1.0)
    assert everyone.dtype == np.bool_ and everyone.shape == (5,) and bool(everyone.all())
    assert bernoulli_rate(fixed("rate-one"), 5, 1).tolist() == [True] * 5
    none = bernoulli_rate(fixed("rate-zero"), 0, 0.25)
    assert none.shape == (0,) and none.dtype == np.bool_


@pytest.mark.parametrize("count", [True, False, 2.0, "3", -1])
def test_a_count_that_is_not_a_natural_int_is_refused(count: object) -> None:
    with pytest.raises(ConfigError):
        bernoulli_rate(fixed("bad-count"), count, 0.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        discrete_gaussian(fixed("bad-count"), count, 4)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [True, "0.5", 0, 1.5, float("nan")])
def test_a_rate_that_is_not_a_number_in_zero_one_is_refused(rate: object) -> None:
    with pytest.raises(ConfigError):
        bernoulli_rate(fixed("bad-rate"), 3, rate)  # type: ignore[arg-type]


# ------------------------------------------------------------ bernoulli_exp()


def test_bernoulli_exp_with_different_denominators_has_each_probability() -> None:
    # Elements with different denominators take the per-element branch of the
    # K-loop; each class must still be Bernoulli(exp(-num/den)).
    pairs = [(1, 2), (1, 3), (2, 3), (5, 4), (3, 1)]
    reps = 4000
    num = np.array([p[0] for p in pairs] * reps, dtype=np.uint64)
    den = np.array([p[1] for p in pairs] * reps, dtype=np.uint64)
    out = bernoulli_exp(fixed("mixed-den"), num, den).reshape(reps, len(pairs))
    for j, (n, d) in enumerate(pairs):
        p = math.exp(-n / d)
        rate = float(out[:, j].mean())
        assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / reps), (n, d, rate, p)


def test_bernoulli_exp_takes_lists_of_ints_like_uint64_arrays() -> None:
    num, den = [3, 0, 5, 1, 7], [2, 1, 3, 4, 7]
    a = bernoulli_exp(fixed("lists"), num, den)  # type: ignore[arg-type]
    b = bernoulli_exp(
        fixed("lists"), np.array(num, dtype=np.uint64), np.array(den, dtype=np.uint64)
    )
    assert a.tolist() == b.tolist()


def test_bernoulli_exp_denominator_range_is_one_to_below_two_to_the_58() -> None:
    ok = bernoulli_exp(fixed("den-range"), np.ones(3, np.uint64), np.full(3, 2**58 - 1, np.uint64))
    assert ok.dtype == np.bool_ and ok.shape == (3,)
    for bad in (0, 2**58, 2**59 - 1, 2**60):
        with pytest.raises(ConfigError):
            bernoulli_exp(fixed("den-range"), np.ones(2, np.uint64), np.full(2, bad, np.uint64))


# ------------------------------------------------------------ discrete_gaussian()


def test_discrete_gaussian_gives_int64_and_zero_samples_on_request() -> None:
    out = discrete_gaussian(fixed("dg-dtype"), 50, 9)
    assert out.dtype == np.int64 and out.shape == (50,)
    empty = discrete_gaussian(fixed("dg-dtype"), 0, 9)
    assert empty.dtype == np.int64 and empty.shape == (0,)


@pytest.mark.parametrize("variance", [1, MAX_BASE_VARIANCE])
def test_discrete_gaussian_accepts_both_ends_of_its_variance_range(variance: int) -> None:
    out = discrete_gaussian(fixed("dg-ends"), 20, variance)
    assert out.shape == (20,)


@pytest.mark.parametrize("at_least", [True, 2.0, 2.5, "4", 0])
def test_plan_variance_takes_only_positive_ints(at_least: object) -> None:
    with pytest.raises(ConfigError):
        plan_variance(at_least)  # type: ignore[arg-type]
