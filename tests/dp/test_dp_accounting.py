"""Accountants: known answers, cross-accountant agreement, composition, calibration."""

from __future__ import annotations

import json
import math
from pathlib import Path

import dp_accounting
import pytest
from dp_accounting import pld
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.dp import ACCOUNTANTS, DPEvent, calibrate_noise, epsilon, supports
from securefl.dp.accounting import (
    NUMERIC_CUTOFF,
    PRV_EPS_ERROR,
    int_order_rdp,
    pld_discretization,
)
from securefl.errors import ConfigError

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "dp_epsilon.json").read_text())
CASES = VECTORS["cases"]


def ev(sigma: float, q: float, steps: int, **kw: object) -> DPEvent:
    return DPEvent(
        noise_multiplier=sigma,
        sample_rate=q,
        steps=steps,
        max_grad_norm=1.0,
        secure_rng=False,
        **kw,  # type: ignore[arg-type]
    )


def case_events(case: dict) -> list[DPEvent]:
    return [ev(case["noise_multiplier"], case["sample_rate"], case["steps"])]


def case_id(case: dict) -> str:
    return f"q={case['sample_rate']:.4g},s={case['noise_multiplier']},T={case['steps']}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_prv_matches_opacus_known_answer(case: dict) -> None:
    # Our PRV sizes its safe domain with integer Rényi orders (faster); the
    # discretisation then differs from PRVAccountant's in the fifth digit.
    got = epsilon(case_events(case), delta=case["delta"], accountant="prv")
    assert got == pytest.approx(case["epsilon"]["prv"], rel=1e-4)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_rdp_is_the_larger_of_opacus_and_dp_accounting(case: dict) -> None:
    # Never below the more conservative of the two well-kept references: they
    # treat fractional orders differently and each is lower somewhere.
    got = epsilon(case_events(case), delta=case["delta"], accountant="rdp")
    both = (case["epsilon"]["rdp_opacus"], case["epsilon"]["rdp_dp_accounting"])
    assert got == pytest.approx(max(both), rel=1e-9)
    assert got >= max(both) * (1 - 1e-12)


def test_rdp_low_noise_case_reports_dp_accountings_larger_epsilon() -> None:
    # Issue 12: q = 0.1, σ = 0.6, 100 steps, δ = 1e-4: Opacus 20.26, dp-accounting 20.48.
    case = next(c for c in CASES if c["noise_multiplier"] == 0.6)
    assert case["epsilon"]["rdp_opacus"] < case["epsilon"]["rdp_dp_accounting"] * 0.995
    got = epsilon(case_events(case), delta=1e-4, accountant="rdp")
    assert got == pytest.approx(20.4755, abs=5e-4)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_pld_is_within_two_percent_of_a_fine_pld(case: dict) -> None:
    got = epsilon(case_events(case), delta=case["delta"], accountant="pld")
    fine = case["epsilon"]["pld_fine"]
    assert fine - 1e-9 <= got <= fine * 1.02


def test_small_epsilon_pld_is_not_overstated() -> None:
    # Issue 12: a fixed 1e-3 grid reported 0.187 where the fine PLD gives 0.152.
    case = next(c for c in CASES if c["steps"] == 6250)
    got = epsilon(case_events(case), delta=case["delta"], accountant="pld")
    assert got <= case["epsilon"]["pld_fine"] * 1.02
    acc = pld.PLDAccountant(value_discretization_interval=1e-3)
    acc.compose(case_events(case)[0].to_dp_accounting())
    assert acc.get_epsilon(case["delta"]) > case["epsilon"]["pld_fine"] * 1.2  # the old grid


@pytest.mark.parametrize("case", [c for c in CASES if "analytic" in c["epsilon"]], ids=case_id)
@pytest.mark.parametrize("accountant", ACCOUNTANTS)
def test_no_accountant_is_below_the_exact_gaussian_epsilon(case: dict, accountant: str) -> None:
    exact = case["epsilon"]["analytic"]
    got = epsilon(case_events(case), delta=case["delta"], accountant=accountant)
    assert got >= exact - 1e-9
    assert got <= exact * 1.15  # and not uselessly loose


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_prv_and_pld_agree_and_rdp_bounds_prv(case: dict) -> None:
    events, delta = case_events(case), case["delta"]
    prv = epsilon(events, delta=delta, accountant="prv")
    pld_eps = epsilon(events, delta=delta, accountant="pld")
    rdp = epsilon(events, delta=delta, accountant="rdp")
    assert abs(prv - pld_eps) <= 0.03 * pld_eps + PRV_EPS_ERROR
    assert rdp >= prv - PRV_EPS_ERROR


def test_heterogeneous_composition_matches_dp_accounting_directly() -> None:
    events = [ev(1.0, 0.02, 60), ev(2.0, 0.05, 40), ev(5.0, 1.0, 1, kind="gaussian")]
    acc = pld.PLDAccountant(value_discretization_interval=1e-4)
    for e in events:
        acc.compose(e.to_dp_accounting())
    independent = acc.get_epsilon(1e-5)
    for accountant in ("prv", "pld"):
        got = epsilon(events, delta=1e-5, accountant=accountant)
        assert got == pytest.approx(independent, rel=0.02, abs=PRV_EPS_ERROR)


def test_composition_ignores_order_and_splitting() -> None:
    a, b = ev(1.0, 0.01, 100), ev(2.0, 0.05, 30)
    for accountant in ACCOUNTANTS:
        forward = epsilon([a, b], delta=1e-5, accountant=accountant)
        assert epsilon([b, a], delta=1e-5, accountant=accountant) == forward
        split = epsilon(
            [ev(1.0, 0.01, 60), b, ev(1.0, 0.01, 40)], delta=1e-5, accountant=accountant
        )
        assert split == forward


def test_no_events_spend_nothing() -> None:
    for accountant in ACCOUNTANTS:
        assert epsilon([], delta=1e-5, accountant=accountant) == 0.0


def test_shuffled_sampling_is_refused_not_guessed() -> None:
    shuffled = ev(1.0, 0.01, 10, sampling="shuffle")
    for accountant in ACCOUNTANTS:
        assert not supports(accountant, shuffled)
        assert supports(accountant, ev(1.0, 0.01, 10))
        with pytest.raises(ConfigError, match="shuffle"):
            epsilon([shuffled], delta=1e-5, accountant=accountant)


def test_bad_accountant_or_delta_is_refused() -> None:
    with pytest.raises(ConfigError, match="accountant"):
        epsilon([ev(1.0, 0.01, 10)], delta=1e-5, accountant="gdp")
    for delta in (0.0, 1.0, -1e-5):
        with pytest.raises(ConfigError, match="delta"):
            epsilon([ev(1.0, 0.01, 10)], delta=delta)


def test_tiny_noise_falls_back_to_the_rdp_upper_bound() -> None:
    # PRV takes minutes here; the guard answers with the (larger, still valid) RDP bound.
    events = [ev(0.05, 0.01, 300)]
    rdp = epsilon(events, delta=1e-5, accountant="rdp")
    assert rdp > NUMERIC_CUTOFF
    assert epsilon(events, delta=1e-5, accountant="prv") == rdp
    assert epsilon(events, delta=1e-5, accountant="pld") == rdp


CALIBRATION_CASES = [
    # (target ε, δ, q, steps, accountant): the simulate default, plan-like and long runs.
    (1.0, 1e-5, 0.25, 48, "prv"),
    (0.5, 1e-5, 0.01, 300, "prv"),
    (3.0, 1e-6, 0.02, 500, "prv"),
    (0.2, 1e-5, 0.0016, 6250, "prv"),
    (1.0, 1e-5, 0.05, 200, "rdp"),
    (1.0, 1e-5, 0.05, 200, "pld"),
]


@pytest.mark.parametrize(("target", "delta", "q", "steps", "accountant"), CALIBRATION_CASES)
def test_calibrated_noise_never_exceeds_the_target(
    target: float, delta: float, q: float, steps: int, accountant: str
) -> None:
    sigma = calibrate_noise(
        target_epsilon=target, delta=delta, sample_rate=q, steps=steps, accountant=accountant
    )
    assert epsilon([ev(sigma, q, steps)], delta=delta, accountant=accountant) <= target
    # Calibrated, not merely safe: 1 % less noise misses the target.
    assert epsilon([ev(sigma / 1.01, q, steps)], delta=delta, accountant=accountant) > target


def test_calibrate_noise_round_trip_prv() -> None:
    tol = 0.01
    sigma = calibrate_noise(
        target_epsilon=2.0, delta=1e-5, sample_rate=0.01, steps=300, tolerance=tol
    )
    assert epsilon([ev(sigma, 0.01, 300)], delta=1e-5) <= 2.0
    # Smallest within tolerance: a little less noise would pass the target.
    assert epsilon([ev(sigma / (1 + tol) ** 2, 0.01, 300)], delta=1e-5) > 2.0


def test_calibrate_noise_counts_prior_events() -> None:
    prior = [ev(1.0, 0.01, 300)]
    alone = calibrate_noise(
        target_epsilon=3.0, delta=1e-5, sample_rate=0.02, steps=200, accountant="rdp"
    )
    after = calibrate_noise(
        target_epsilon=3.0,
        delta=1e-5,
        sample_rate=0.02,
        steps=200,
        accountant="rdp",
        prior_events=prior,
    )
    assert after > alone
    total = epsilon([*prior, ev(after, 0.02, 200)], delta=1e-5, accountant="rdp")
    assert 2.9 < total <= 3.0


def test_calibrate_noise_refuses_a_budget_too_small() -> None:
    with pytest.raises(ConfigError, match="budget too small"):
        calibrate_noise(target_epsilon=1e-3, delta=1e-5, sample_rate=0.01, steps=300)
    with pytest.raises(ConfigError, match="budget too small"):
        calibrate_noise(
            target_epsilon=1.0,
            delta=1e-5,
            sample_rate=0.01,
            steps=10,
            accountant="rdp",
            prior_events=[ev(0.8, 0.01, 1000)],
        )


@settings(max_examples=10, deadline=None)
@given(
    sigma=st.floats(0.6, 8.0),
    q=st.floats(0.001, 0.2),
    steps=st.integers(1, 2000),
)
def test_rdp_epsilon_monotone_in_steps_and_decreasing_in_sigma(
    sigma: float, q: float, steps: int
) -> None:
    base = epsilon([ev(sigma, q, steps)], delta=1e-5, accountant="rdp")
    assert epsilon([ev(sigma, q, steps + 1)], delta=1e-5, accountant="rdp") >= base
    assert epsilon([ev(sigma * 1.05, q, steps)], delta=1e-5, accountant="rdp") <= base


@settings(max_examples=4, deadline=None)
@given(
    sigma=st.floats(0.8, 4.0),
    q=st.floats(0.005, 0.1),
    steps=st.integers(10, 300),
    accountant=st.sampled_from(["prv", "pld"]),
)
def test_numeric_epsilon_monotone_in_steps_and_decreasing_in_sigma(
    sigma: float, q: float, steps: int, accountant: str
) -> None:
    base = epsilon([ev(sigma, q, steps)], delta=1e-5, accountant=accountant)
    assert epsilon([ev(sigma, q, 2 * steps)], delta=1e-5, accountant=accountant) >= base
    assert epsilon([ev(sigma * 1.25, q, steps)], delta=1e-5, accountant=accountant) <= base


def test_dp_accounting_mapping_is_what_auditors_recompute() -> None:
    event = ev(1.1, 0.02, 150)
    mapped = event.to_dp_accounting()
    assert mapped == dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.02, dp_accounting.GaussianDpEvent(1.1)), 150
    )
    rough = int_order_rdp(((1.1, 0.02, 150),), 1e-5)
    acc = pld.PLDAccountant(value_discretization_interval=pld_discretization(rough))
    acc.compose(mapped)
    assert acc.get_epsilon(1e-5) == pytest.approx(epsilon([event], delta=1e-5, accountant="pld"))
    assert math.isfinite(acc.get_epsilon(1e-5))


def test_pld_discretization_is_relative_to_epsilon_within_bounds() -> None:
    assert pld_discretization(100.0) == 1e-3
    assert pld_discretization(0.2) == pytest.approx(1e-4)
    assert pld_discretization(1e-6) == 1e-5
