"""Distributed DP building blocks: rounding sensitivity, noise shares, ring sizing.

Each claim is tested as the adversary sees it: neighbouring datasets and the
coupled roundings of what is sent (sensitivity), colluders subtracting their
own shares (noise), and simulated wraps against the stated bound (ring).
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from securefl.dp.distributed import (
    add_noise_share,
    batch_bound,
    noise_share,
    randomized_round,
    ring_plan,
    sensitivity,
    signal_bound,
    skellam_tail,
    wrap_probability,
)
from securefl.errors import ConfigError, DataError, OverflowRefusedError
from securefl.hazmat.dgauss import KeystreamRng
from securefl.hazmat.skellam import skellam

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "dp_skellam.json").read_text())
SIGNIFICANCE = 1e-4


def key(label: str) -> bytes:
    return (label.encode() * 32)[:32]


def clipped(rng: np.random.Generator, batch: int, d: int, clip: float) -> npt.NDArray[np.float64]:
    """Per-example gradients clipped to L2 norm ``clip`` (test data, so NumPy's RNG is fine)."""
    g = rng.standard_normal((batch, d)) * rng.uniform(0.01, 5.0, size=(batch, 1))
    norms = np.linalg.norm(g, axis=1, keepdims=True)
    return g * np.minimum(1.0, clip / np.maximum(norms, 1e-300))


# ------------------------------------------------------------ rounding


@pytest.mark.parametrize("case", VECTORS["rounding"])
def test_rounding_known_answer(case: dict) -> None:
    values = np.array([float.fromhex(v) for v in case["values"]])
    rng = KeystreamRng(bytes.fromhex(case["key"]))
    assert randomized_round(values, scale=case["scale"], rng=rng).tolist() == case["out"]


@pytest.mark.parametrize("scale", VECTORS["must_fail"]["rounding_scale"])
def test_a_bad_scale_is_refused(scale: object) -> None:
    s = float(scale) if isinstance(scale, str) else scale
    with pytest.raises(ConfigError):
        randomized_round(np.zeros(3), scale=s)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        sensitivity(clip=1.0, scale=s, dimension=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [np.array([np.nan]), np.array([np.inf]), np.array([2.0**53])])
def test_non_finite_or_huge_sums_are_refused(bad: npt.NDArray[np.float64]) -> None:
    with pytest.raises(DataError):
        randomized_round(bad, scale=1.0)


def test_rounding_is_unbiased() -> None:
    x = np.full(400_000, 0.3)
    r = randomized_round(x, scale=1.0, rng=KeystreamRng(key("unbiased")))
    assert set(np.unique(r).tolist()) == {0, 1}
    assert abs(r.mean() - 0.3) < 5 * math.sqrt(0.21 / x.size)
    neg = randomized_round(-x, scale=4.0, rng=KeystreamRng(key("unbiased-neg")))
    assert abs(neg.mean() + 1.2) < 5 * math.sqrt(0.16 / x.size)


def test_integers_round_to_themselves() -> None:
    x = np.arange(-50, 50, dtype=np.float64)
    assert randomized_round(x, scale=2.0).tolist() == (2 * x).astype(int).tolist()


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.integers(1, 64),
    batch=st.integers(1, 12),
    clip=st.floats(0.05, 4.0),
    log_scale=st.integers(-2, 6),
    drop=st.integers(0, 11),
    coins=st.binary(min_size=32, max_size=32),
)
def test_what_is_sent_stays_within_the_sensitivity(
    seed: int, d: int, batch: int, clip: float, log_scale: int, drop: int, coins: bytes
) -> None:
    """Neighbouring batches (one example removed), rounded under the shared-coin coupling."""
    scale = 2.0**log_scale
    grads = clipped(np.random.default_rng(seed), batch, d, clip)
    full = grads.sum(axis=0)
    neighbour = np.delete(grads, drop % batch, axis=0).sum(axis=0)
    sent = randomized_round(full, scale=scale, rng=KeystreamRng(coins))
    sent_nb = randomized_round(neighbour, scale=scale, rng=KeystreamRng(coins))
    bound = sensitivity(clip=clip, scale=scale, dimension=d)
    diff = (sent - sent_nb).astype(np.float64)
    assert float(np.linalg.norm(diff)) <= bound.l2
    assert float(np.abs(diff).sum()) <= bound.l1


def test_the_square_root_of_d_term_is_needed() -> None:
    """Without it the bound fails: many coordinates each cross an integer under one coupling."""
    d, clip, scale = 400, 1.0, 1.0
    grad = np.full(d, clip / math.sqrt(d) * 0.999)  # norm just below C
    worst = 0.0
    for i in range(20):
        coins = key(f"sqrt-d/{i}")
        a = randomized_round(grad, scale=scale, rng=KeystreamRng(coins))
        b = randomized_round(np.zeros(d), scale=scale, rng=KeystreamRng(coins))
        worst = max(worst, float(np.linalg.norm((a - b).astype(np.float64))))
    assert worst > clip * scale  # C·s alone would be violated
    assert worst <= sensitivity(clip=clip, scale=scale, dimension=d).l2


# ------------------------------------------------------------ noise shares


@pytest.mark.parametrize("case", VECTORS["must_fail"]["share"])
def test_bad_share_parameters_are_refused(case: dict) -> None:
    with pytest.raises(ConfigError):
        noise_share(
            case["total_variance"], threshold=case["threshold"], colluders=case["colluders"]
        )


def test_share_variance_is_total_over_t_minus_c() -> None:
    share = noise_share(1000, threshold=5, colluders=2)
    assert share.variance == Fraction(1000, 3)
    assert share.contributors == 3
    assert share.own_noise_fraction == pytest.approx(1 / math.sqrt(3))


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(3, 40),
    data=st.data(),
    mu=st.integers(1, 10**9),
)
def test_colluders_subtracting_their_shares_leave_the_full_noise(
    n: int, data: st.DataObject, mu: int
) -> None:
    """Any round that unmasks (>= t survivors) keeps >= μ after <= c colluders remove theirs."""
    t = data.draw(st.integers(2, n))
    c = data.draw(st.integers(0, t - 1))
    survivors = data.draw(st.integers(t, n))
    colluding_survivors = data.draw(st.integers(0, min(c, survivors)))
    share = noise_share(mu, threshold=t, colluders=c)
    assert share.residual_variance(survivors - colluding_survivors) >= mu


def test_the_adversarial_view_carries_the_full_noise_empirically() -> None:
    """Worst case: t survivors, c of them colluding; what is left is Sk(μ), sampled."""
    n, t, c, mu, d = 7, 5, 2, 900, 60_000
    share = noise_share(mu, threshold=t, colluders=c)
    survivors = list(range(t))
    colluders = set(survivors[:c])
    noised = {
        i: add_noise_share(np.zeros(d, dtype=np.int64), share, rng=KeystreamRng(key(f"site/{i}")))
        for i in range(n)
    }
    seen = sum(noised[i] for i in survivors)
    residual = seen - sum(noised[i] for i in colluders)  # the colluders know their own shares
    assert isinstance(residual, np.ndarray)
    assert abs(residual.var() / mu - 1) < 6 * math.sqrt(2 / d)
    m = mu / 2
    assert stats.kstest(residual, stats.skellam(m, m).cdf).statistic < 0.02


def test_integer_inputs_only() -> None:
    share = noise_share(10, threshold=3, colluders=1)
    with pytest.raises(ConfigError):
        add_noise_share(np.zeros(3), share)  # type: ignore[arg-type]


# ------------------------------------------------------------ ring sizing


@pytest.mark.parametrize("mu", [0.5, 3.0, 40.0, 1000.0, 5e4])
def test_the_skellam_tail_bound_is_above_the_exact_tail(mu: float) -> None:
    m = mu / 2
    sd = math.sqrt(mu)
    for a in {1, 2, 3, int(sd), int(2 * sd), int(4 * sd), int(8 * sd) + 1}:
        if a < 1:
            continue
        exact = 2 * stats.skellam.sf(a - 1, m, m)  # P[|X| >= a]
        assert skellam_tail(mu, a) >= exact


@settings(max_examples=200, deadline=None)
@given(
    bits=st.integers(8, 40),
    d=st.integers(1, 10**6),
    signal=st.integers(0, 2**20),
    mu=st.floats(1.0, 1e12),
)
def test_wrap_probability_is_monotone(bits: int, d: int, signal: int, mu: float) -> None:
    p = wrap_probability(bits=bits, dimension=d, signal=signal, noise_variance=mu)
    assert 0.0 <= p <= 1.0
    assert wrap_probability(bits=bits + 1, dimension=d, signal=signal, noise_variance=mu) <= p
    assert wrap_probability(bits=bits, dimension=d + 1, signal=signal, noise_variance=mu) >= p
    assert wrap_probability(bits=bits, dimension=d, signal=signal + 1, noise_variance=mu) >= p
    assert wrap_probability(bits=bits, dimension=d, signal=signal, noise_variance=mu * 2) >= p


@pytest.mark.parametrize(("mu", "signal", "failure"), [(30.0, 5, 0.05), (200.0, 20, 0.02)])
def test_the_ring_plan_is_conservative_in_simulation(
    mu: float, signal: int, failure: float
) -> None:
    """Simulated noisy sums at the plan's ring wrap no more often than the stated bound."""
    d, rounds = 4, 20_000
    plan = ring_plan(dimension=d, signal=signal, noise_variance=mu, failure=failure, max_bits=20)
    assert plan.wrap_bound <= failure
    noise = KeystreamRng(key(f"ring/{mu}"))
    draws = skellam(noise, d * rounds, Fraction(mu).limit_denominator(1))
    values = signal + draws.reshape(rounds, d)
    half = 1 << (plan.bits - 1)
    wrapped = np.any((values < -half) | (values > half - 1), axis=1).mean()
    beyond = np.any(np.abs(values) > plan.magnitude_bound, axis=1).mean()
    slack = 4 * math.sqrt(failure / rounds)
    assert wrapped <= plan.wrap_bound + slack
    assert beyond <= failure + slack
    # and one bit fewer would not have met the bound
    smaller = wrap_probability(bits=plan.bits - 1, dimension=d, signal=signal, noise_variance=mu)
    assert smaller > failure or plan.bits == 2


def test_a_ring_beyond_max_bits_is_refused() -> None:
    with pytest.raises(OverflowRefusedError):
        ring_plan(dimension=10**5, signal=2**31, noise_variance=1e6)


def test_batch_bound_holds_with_the_stated_probability() -> None:
    for records, rate, failure in [(500, 0.05, 1e-6), (10_000, 0.001, 2.0**-40), (60, 0.5, 0.01)]:
        b = batch_bound(records=records, rate=rate, failure=failure)
        assert stats.binom.sf(b, records, rate) <= failure


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sites=st.integers(1, 6),
    d=st.integers(1, 32),
    clip=st.floats(0.1, 3.0),
    log_scale=st.integers(0, 8),
    coins=st.binary(min_size=32, max_size=32),
)
def test_the_signal_bound_holds_for_rounded_clipped_sums(
    seed: int, sites: int, d: int, clip: float, log_scale: int, coins: bytes
) -> None:
    rng = np.random.default_rng(seed)
    batches = rng.integers(0, 8, size=sites)
    assume(batches.sum() > 0)
    scale = 2.0**log_scale
    total = np.zeros(d, dtype=np.int64)
    coin_rng = KeystreamRng(coins)
    for b in batches:
        batch_sum = clipped(rng, int(b), d, clip).sum(axis=0)
        total += randomized_round(batch_sum, scale=scale, rng=coin_rng)
    bound = signal_bound(clip=clip, scale=scale, batch=int(batches.sum()), sites=sites)
    assert int(np.abs(total).max()) <= bound
