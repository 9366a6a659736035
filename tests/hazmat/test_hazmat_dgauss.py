"""Exact discrete Gaussian and Bernoulli sampling from AES-CTR: vectors, distribution, refusals.

The statistical tests draw from fixed keys, so they are deterministic: each
asserts a goodness-of-fit p-value above 1e-4 (the significance level: a
correct sampler fails a given test for one key in ten thousand; with the
fixed keys here it passes, and it stays so). The mutation tests in the
closing block show that the checks see a wrong distribution.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from securefl.errors import ConfigError
from securefl.hazmat import dgauss
from securefl.hazmat.dgauss import (
    MAX_BASE_VARIANCE,
    MAX_VARIANCE,
    KeystreamRng,
    bernoulli_exp,
    bernoulli_rate,
    discrete_gaussian,
    gaussian_integers,
    plan_variance,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "dp_noise.json").read_text())
SIGNIFICANCE = 1e-4


def key(label: str) -> bytes:
    return (label.encode() * 32)[:32]


# ------------------------------------------------------------ known answers


@pytest.mark.parametrize("case", VECTORS["keystream"])
def test_keystream_words_match_aes_ctr(case: dict) -> None:
    words = KeystreamRng(bytes.fromhex(case["key"])).words(len(case["words"]))
    assert [str(int(w)) for w in words] == case["words"]


@pytest.mark.parametrize("case", VECTORS["poisson"])
def test_poisson_coins_known_answer(case: dict) -> None:
    mask = bernoulli_rate(KeystreamRng(bytes.fromhex(case["key"])), case["count"], case["rate"])
    assert np.flatnonzero(mask).tolist() == case["included"]


@pytest.mark.parametrize("case", VECTORS["single_draws"])
def test_single_draws_match_the_scalar_transcription_of_the_paper(case: dict) -> None:
    rng = KeystreamRng(bytes.fromhex(case["key"]))
    got = [int(discrete_gaussian(rng, 1, case["variance"])[0]) for _ in case["draws"]]
    assert got == case["draws"]


@pytest.mark.parametrize("case", VECTORS["batch_draws"])
def test_batch_draws_known_answer(case: dict) -> None:
    plan = plan_variance(case["at_least"])
    assert (plan.k, plan.fine, plan.coarse) == tuple(
        case["plan"][f] for f in ("k", "fine", "coarse")
    )
    got = gaussian_integers(KeystreamRng(bytes.fromhex(case["key"])), len(case["values"]), plan)
    assert got.tolist() == case["values"]


def test_a_fresh_rng_never_repeats_a_stream() -> None:
    assert not np.array_equal(KeystreamRng().words(4), KeystreamRng().words(4))


# ------------------------------------------------------------ distribution


def exact_pmf(variance: int, support: np.ndarray) -> np.ndarray:
    weights = np.exp(-(support.astype(np.float64) ** 2) / (2 * variance))
    full = np.arange(-60 * math.isqrt(variance) - 60, 60 * math.isqrt(variance) + 61)
    return weights / np.exp(-(full.astype(np.float64) ** 2) / (2 * variance)).sum()


@pytest.mark.parametrize("variance", [1, 3, 10])
def test_small_variance_fits_the_exact_pmf(variance: int) -> None:
    draws = discrete_gaussian(KeystreamRng(key(f"chi{variance}")), 60_000, variance)
    bound = 3 * math.isqrt(variance) + 3
    support = np.arange(-bound, bound + 1)
    expected = exact_pmf(variance, support) * draws.size
    observed = np.array([(draws == x).sum() for x in support], dtype=np.float64)
    tail_obs = draws.size - observed.sum()
    tail_exp = draws.size - expected.sum()
    chi2 = stats.chisquare(np.append(observed, tail_obs), np.append(expected, tail_exp))
    assert chi2.pvalue > SIGNIFICANCE


@pytest.mark.parametrize("variance", [4_000_000, MAX_BASE_VARIANCE, 10**13])
def test_large_variance_is_normal_by_ks_and_moments(variance: int) -> None:
    plan = plan_variance(variance)
    draws = gaussian_integers(KeystreamRng(key(f"ks{variance}")), 40_000, plan)
    sigma = math.sqrt(plan.variance)
    # At this σ the discrete Gaussian's CDF is within 1/σ of the normal's.
    assert stats.kstest(draws / sigma, "norm").pvalue > SIGNIFICANCE
    assert abs(draws.mean() / sigma) < 4.5 / math.sqrt(draws.size)
    assert abs(draws.var() / plan.variance - 1) < 4.5 * math.sqrt(2 / draws.size)
    assert abs(stats.kurtosis(draws)) < 4.5 * math.sqrt(24 / draws.size)


@pytest.mark.parametrize(("num", "den"), [(0, 1), (1, 2), (1, 1), (17, 10), (7, 2)])
def test_bernoulli_exp_has_probability_exp_minus_gamma(num: int, den: int) -> None:
    n = 40_000
    coins = bernoulli_exp(
        KeystreamRng(key(f"be{num}/{den}")), np.full(n, num, np.uint64), np.full(n, den, np.uint64)
    )
    p = math.exp(-num / den)
    assert stats.binomtest(int(coins.sum()), n, p).pvalue > SIGNIFICANCE


def test_poisson_counts_follow_the_binomial() -> None:
    rng = KeystreamRng(key("binomial"))
    n, q, trials = 200, 0.1, 3_000
    sizes = np.array([bernoulli_rate(rng, n, q).sum() for _ in range(trials)])
    support = np.arange(5, 36)
    observed = np.array([(sizes == s).sum() for s in support], dtype=np.float64)
    expected = stats.binom.pmf(support, n, q) * trials
    observed = np.append(observed, trials - observed.sum())
    expected = np.append(expected, trials - expected.sum())
    assert stats.chisquare(observed, expected).pvalue > SIGNIFICANCE
    assert len(set(sizes.tolist())) > 10


def test_plan_variance_reaches_at_least_what_was_asked() -> None:
    for at_least in [1, 2, MAX_BASE_VARIANCE, MAX_BASE_VARIANCE + 1, 10**13, MAX_VARIANCE]:
        plan = plan_variance(at_least)
        assert plan.variance >= at_least
        assert plan.variance <= at_least * (1 + 1e-6) + 9
        if plan.k:  # the convolution theorem's condition (see plan_variance)
            s1, s2 = math.sqrt(plan.fine), math.sqrt(plan.coarse)
            sigma3 = s1 * plan.k * s2 / math.hypot(s1, plan.k * s2)
            assert sigma3 >= 2.99 * plan.k
            assert plan.fine <= MAX_BASE_VARIANCE and plan.coarse <= MAX_BASE_VARIANCE


@settings(max_examples=30, deadline=None)
@given(m=st.lists(st.integers(1, 2**63), min_size=1, max_size=20))
def test_below_stays_below(m: list[int]) -> None:
    bounds = np.array(m, dtype=np.uint64)
    assert np.all(KeystreamRng(key("below")).below(bounds) < bounds)


# ------------------------------------------------------------ must fail


@pytest.mark.parametrize("variance", [*VECTORS["must_fail"]["variance"], 2.5, True])
def test_bad_variance_is_refused(variance: object) -> None:
    with pytest.raises(ConfigError):
        discrete_gaussian(KeystreamRng(key("bad")), 3, variance)  # type: ignore[arg-type]


def test_variance_beyond_the_sampler_is_refused() -> None:
    with pytest.raises(ConfigError, match="maximum"):
        plan_variance(MAX_VARIANCE + 1)
    with pytest.raises(ConfigError):
        plan_variance(0)


@pytest.mark.parametrize("rate", VECTORS["must_fail"]["rate"])
def test_bad_rate_is_refused(rate: object) -> None:
    value = float(rate) if isinstance(rate, str) else rate
    with pytest.raises(ConfigError):
        bernoulli_rate(KeystreamRng(key("bad")), 3, value)  # type: ignore[arg-type]


@pytest.mark.parametrize("length", VECTORS["must_fail"]["key_len"])
def test_bad_key_is_refused(length: int) -> None:
    with pytest.raises(ConfigError):
        KeystreamRng(bytes(length))


def test_the_rng_refuses_pickling() -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(KeystreamRng())


# ------------------------------------------------------------ the tests can fail


def test_distribution_checks_catch_a_naive_rounded_float_sampler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A sampler that rounds a float Gaussian of the wrong width, as a
    # plausible bug would, must fail the same check the real one passes.
    def wrong(rng: KeystreamRng, count: int, variance: int) -> np.ndarray:
        u = (rng.words(count) >> np.uint64(11)).astype(np.float64) / 2.0**53
        return np.rint(stats.norm.ppf(u.clip(1e-300)) * math.sqrt(variance * 1.1)).astype(np.int64)

    monkeypatch.setattr(dgauss, "discrete_gaussian", wrong)
    draws = dgauss.discrete_gaussian(KeystreamRng(key("chi3")), 60_000, 3)
    support = np.arange(-8, 9)
    expected = exact_pmf(3, support) * draws.size
    observed = np.array([(draws == x).sum() for x in support], dtype=np.float64)
    chi2 = stats.chisquare(
        np.append(observed, draws.size - observed.sum()),
        np.append(expected, draws.size - expected.sum()),
    )
    assert chi2.pvalue < SIGNIFICANCE


def test_coins_with_a_shared_or_per_element_denominator_agree_also_when_rejecting() -> None:
    # den just above 2^63: about half the words fall outside the largest
    # multiple of den and are redrawn, so the rejection path runs.
    den = 2**63 + 1
    num = np.full(4000, den // 3, dtype=np.uint64)
    shared = KeystreamRng(key("coins")).coins(num, den)
    per_element = KeystreamRng(key("coins")).coins(num, np.full(4000, den, dtype=np.uint64))
    assert np.array_equal(shared, per_element)
    assert stats.binomtest(int(shared.sum()), shared.size, (den // 3) / den).pvalue > SIGNIFICANCE
