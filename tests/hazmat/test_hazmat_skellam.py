"""Exact Poisson and Skellam sampling: vectors, distribution against the exact pmf, refusals.

Statistical tests draw from fixed keys, so they are deterministic; each
asserts a goodness-of-fit p-value above 1e-4. The mutation tests at the end
show that the same checks reject a broken sampler: a rounded Gaussian, a
table shifted by one, tails accepted without their weight, a Skellam made
of one Poisson twice.
"""

from __future__ import annotations

import dataclasses
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from securefl.errors import ConfigError
from securefl.hazmat import skellam as sk
from securefl.hazmat.dgauss import KeystreamRng
from securefl.hazmat.skellam import TABLE_MAX_MEAN, poisson, skellam

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "dp_skellam.json").read_text())
SIGNIFICANCE = 1e-4
N = 200_000


def key(label: str) -> bytes:
    return (label.encode() * 32)[:32]


def frac(pair: list[int]) -> Fraction:
    return Fraction(pair[0], pair[1])


def discrete_fit(x: npt.NDArray[np.int64], dist: object, min_expected: float = 20.0) -> float:
    """Chi-square p-value of ``x`` against a frozen scipy discrete ``dist``, bins pooled."""
    lo, hi = int(dist.ppf(1e-7)), int(dist.isf(1e-7))  # type: ignore[attr-defined]
    ks = np.arange(lo, hi + 1)
    shifted = (np.clip(x, lo - 1, hi + 1) - (lo - 1)).astype(np.int64)
    counts = np.bincount(shifted, minlength=ks.size + 2)
    expected = (
        np.concatenate(
            [[dist.cdf(lo - 1)], dist.pmf(ks), [dist.sf(hi)]]  # type: ignore[attr-defined]
        )
        * x.size
    )
    obs_p, exp_p, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(counts, expected, strict=True):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= min_expected:
            obs_p.append(acc_o)
            exp_p.append(acc_e)
            acc_o = acc_e = 0.0
    obs_p[-1] += acc_o
    exp_p[-1] += acc_e
    exp_arr = np.array(exp_p) * (sum(obs_p) / sum(exp_p))
    return float(stats.chisquare(obs_p, exp_arr).pvalue)


def poisson_fit(x: npt.NDArray[np.int64], lam: float) -> float:
    return discrete_fit(x, stats.poisson(lam))


# ------------------------------------------------------------ known answers


@pytest.mark.parametrize("case", VECTORS["poisson"], ids=lambda c: str(c["mean"]))
def test_poisson_known_answer(case: dict) -> None:
    got = poisson(KeystreamRng(bytes.fromhex(case["key"])), case["count"], frac(case["mean"]))
    assert got.tolist() == case["values"]


@pytest.mark.parametrize("case", VECTORS["skellam"], ids=lambda c: str(c["variance"]))
def test_skellam_known_answer(case: dict) -> None:
    got = skellam(KeystreamRng(bytes.fromhex(case["key"])), case["count"], frac(case["variance"]))
    assert got.tolist() == case["values"]


def test_small_cases_are_cross_checked_by_the_exact_reference() -> None:
    checked = [c for c in VECTORS["poisson"] + VECTORS["skellam"] if c["cross_checked"]]
    assert len(checked) >= 5


# ------------------------------------------------------------ refusals


def _as_mean(v: object) -> object:
    return frac(v) if isinstance(v, list) else v


@pytest.mark.parametrize("mean", VECTORS["must_fail"]["poisson_mean"])
def test_bad_poisson_mean_is_refused(mean: object) -> None:
    with pytest.raises(ConfigError):
        poisson(KeystreamRng(key("x")), 3, _as_mean(mean))  # type: ignore[arg-type]


@pytest.mark.parametrize("variance", VECTORS["must_fail"]["skellam_variance"])
def test_bad_skellam_variance_is_refused(variance: object) -> None:
    with pytest.raises(ConfigError):
        skellam(KeystreamRng(key("x")), 3, _as_mean(variance))  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [-1, True, 2.0])
def test_bad_count_is_refused(count: object) -> None:
    with pytest.raises(ConfigError):
        poisson(KeystreamRng(key("x")), count, 3)  # type: ignore[arg-type]


def test_a_float_mean_is_refused_not_rounded() -> None:
    with pytest.raises(ConfigError):
        poisson(KeystreamRng(key("x")), 3, 2.5)  # type: ignore[arg-type]


def test_a_non_csprng_source_is_refused() -> None:
    with pytest.raises(ConfigError):
        poisson(np.random.default_rng(0), 3, 3)  # type: ignore[arg-type]


# ------------------------------------------------------------ distribution


@pytest.mark.parametrize("lam", [Fraction(1, 3), Fraction(5), Fraction(1000, 7), Fraction(40_000)])
def test_poisson_fits_the_exact_pmf(lam: Fraction) -> None:
    x = poisson(KeystreamRng(key(f"fit/{lam}")), N, lam)
    assert poisson_fit(x, float(lam)) > SIGNIFICANCE
    assert abs(x.mean() - float(lam)) < 5 * np.sqrt(float(lam) / N)


def test_large_mean_has_the_poisson_moments() -> None:
    lam = 10**9  # split into pieces above TABLE_MAX_MEAN
    assert lam > TABLE_MAX_MEAN
    x = poisson(KeystreamRng(key("big")), 20_000, lam).astype(np.float64)
    z = (x - lam) / np.sqrt(lam)
    assert abs(z.mean()) < 5 / np.sqrt(x.size)
    assert abs(z.var() - 1) < 6 * np.sqrt(2 / x.size)
    assert stats.kstest(z, "norm").pvalue > SIGNIFICANCE


def test_the_split_path_fits_the_pmf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sk, "TABLE_MAX_MEAN", 64)  # 1000 = 16 pieces of 62.5
    x = poisson(KeystreamRng(key("split")), N, 1000)
    assert poisson_fit(x, 1000.0) > SIGNIFICANCE


def test_the_tails_are_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-wide table sends most draws through the geometric tails and exact acceptance."""
    monkeypatch.setattr(sk, "_window", lambda m: 1)
    sk._build.cache_clear()
    try:
        x = poisson(KeystreamRng(key("tails")), 4_000, Fraction(30))
        assert poisson_fit(x, 30.0) > SIGNIFICANCE
    finally:
        sk._build.cache_clear()


def test_the_exact_slow_acceptance_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flat proposal (every w_k = 2^40) with every acceptance left undecided by the fast
    thresholds: the exact lazy comparison alone must turn it into Poisson, accepting k with
    probability r(k)."""
    real = sk._build.__wrapped__

    def flat(lam: Fraction) -> sk._Table:
        t = real(lam)
        w = 1 << 40
        size = len(t.weights)
        rho, _ = t.right
        left = None
        if t.left is not None:
            left = (t.left[0], math.ceil(w * t.left[0] / (1 - t.left[0])))
        return dataclasses.replace(
            t,
            weights=(w,) * size,
            cum=np.cumsum(np.full(size, w, dtype=np.uint64), dtype=np.uint64),
            thr_lo=np.zeros(size, dtype=np.uint64),
            thr_hi=np.full(size, 2**64 - 1, dtype=np.uint64),
            right=(rho, math.ceil(w * rho / (1 - rho))),
            left=left,
        )

    monkeypatch.setattr(sk, "_build", flat)
    x = poisson(KeystreamRng(key("slow")), 5_000, Fraction(9, 2))
    assert poisson_fit(x, 4.5) > SIGNIFICANCE


@pytest.mark.parametrize("mu", [Fraction(7), Fraction(301, 3), Fraction(2 * 10**6)])
def test_skellam_fits_the_exact_pmf(mu: Fraction) -> None:
    x = skellam(KeystreamRng(key(f"sk/{mu}")), N, mu)
    m = float(mu) / 2
    assert abs(x.mean()) < 5 * np.sqrt(float(mu) / N)
    assert abs(x.var() / float(mu) - 1) < 6 * np.sqrt(2 / N)
    assert discrete_fit(x, stats.skellam(m, m)) > SIGNIFICANCE


def test_a_sum_of_shares_is_the_full_skellam() -> None:
    """Closure under summation: three Sk(μ/3) shares add up to Sk(μ)."""
    mu = Fraction(90)
    shares = [skellam(KeystreamRng(key(f"share/{i}")), N, mu / 3) for i in range(3)]
    total = sum(shares)
    assert isinstance(total, np.ndarray)
    single = skellam(KeystreamRng(key("share/whole")), N, mu)
    assert stats.ks_2samp(total, single).pvalue > SIGNIFICANCE
    assert abs(total.var() / 90 - 1) < 6 * np.sqrt(2 / N)


@settings(max_examples=30, deadline=None)
@given(
    num=st.integers(min_value=1, max_value=10**6),
    den=st.integers(min_value=1, max_value=2**20),
    count=st.integers(min_value=0, max_value=50),
)
def test_outputs_are_in_the_support(num: int, den: int, count: int) -> None:
    lam = Fraction(num, den)
    x = poisson(KeystreamRng(key("support")), count, lam)
    assert x.shape == (count,) and x.dtype == np.int64
    assert (x >= 0).all()
    sk._build.cache_clear()


def test_a_fresh_rng_gives_fresh_noise() -> None:
    first, second = poisson(KeystreamRng(), 64, 10**6), poisson(KeystreamRng(), 64, 10**6)
    assert first.tolist() != second.tolist()


# ------------------------------------------------------------ mutations: the checks have teeth


def test_checks_catch_a_rounded_gaussian(monkeypatch: pytest.MonkeyPatch) -> None:
    def gaussian(rng: KeystreamRng, count: int, t: sk._Table) -> npt.NDArray[np.int64]:
        g = np.random.default_rng(0).normal(float(t.lam), np.sqrt(float(t.lam)), count)
        return np.maximum(np.round(g), 0).astype(np.int64)

    monkeypatch.setattr(sk, "_poisson_piece", gaussian)
    x = poisson(KeystreamRng(key("fit/1000/7")), N, Fraction(1000, 7))
    assert poisson_fit(x, 1000 / 7) < SIGNIFICANCE


def test_checks_catch_a_table_off_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    real = sk._build.__wrapped__

    def shifted(lam: Fraction) -> sk._Table:
        t = real(lam)
        return dataclasses.replace(t, lo=t.lo + 1)

    monkeypatch.setattr(sk, "_build", shifted)
    x = poisson(KeystreamRng(key("fit/5")), N, Fraction(5))
    assert poisson_fit(x, 5.0) < SIGNIFICANCE


def test_checks_catch_unweighted_tails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sk, "_window", lambda m: 1)
    monkeypatch.setattr(sk, "_lazy_accept", lambda rng, word, bounds: True)
    sk._build.cache_clear()
    try:
        x = poisson(KeystreamRng(key("tails")), 4_000, Fraction(30))
        assert poisson_fit(x, 30.0) < SIGNIFICANCE
    finally:
        sk._build.cache_clear()


def test_checks_catch_a_skellam_with_the_variance_as_each_mean(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = sk.poisson
    monkeypatch.setattr(sk, "poisson", lambda rng, count, mean: real(rng, count, 2 * mean))
    x = skellam(KeystreamRng(key("sk/7")), N, Fraction(7))
    assert discrete_fit(x, stats.skellam(3.5, 3.5)) < SIGNIFICANCE
