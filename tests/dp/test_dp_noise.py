"""The grid Gaussian mechanism: known answers, the accounting bound, the attacks it closes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.dp.noise import SMOOTHING_SIGMA, SecureGaussianNoise, plan_noise
from securefl.errors import ConfigError

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "dp_noise.json").read_text())


@pytest.mark.parametrize("case", VECTORS["mechanism"])
def test_mechanism_known_answer(case: dict) -> None:
    mech = SecureGaussianNoise._from_parts(
        noise_multiplier=case["noise_multiplier"],
        max_grad_norm=case["max_grad_norm"],
        dims=case["dims"],
        key=bytes.fromhex(case["key"]),
    )
    assert mech.plan.granularity == case["granularity"]
    assert mech.plan.variance.variance == case["variance"]
    assert mech.privatize(np.array(case["summed"])).tolist() == case["released"]


@settings(max_examples=60, deadline=None)
@given(
    sigma=st.floats(0.05, 200.0),
    clip=st.floats(1e-4, 1e3),
    dims=st.integers(1, 10**8),
)
def test_the_mechanism_is_at_least_as_noisy_as_the_accountant_assumes(
    sigma: float, clip: float, dims: int
) -> None:
    plan = plan_noise(noise_multiplier=sigma, max_grad_norm=clip, dims=dims)
    # Step 3 of the module doc: σ_c / Δ >= σ with Δ = C/γ + sqrt(d), exactly.
    assert plan.sensitivity == clip / plan.granularity + math.sqrt(dims)
    assert plan.variance.variance - SMOOTHING_SIGMA**2 >= (sigma * plan.sensitivity) ** 2
    assert plan.effective_noise_multiplier >= sigma
    assert plan.inflation >= 1.0
    assert math.log2(plan.granularity).is_integer()  # exact float64 grid


def test_the_grid_costs_little_noise_for_a_large_model() -> None:
    plan = plan_noise(noise_multiplier=1.0, max_grad_norm=1.0, dims=10**6)
    assert plan.inflation < 1.003


@settings(max_examples=40, deadline=None)
@given(
    dims=st.integers(1, 50),
    seed=st.integers(0, 2**32 - 1),
    clip=st.floats(0.01, 10.0),
)
def test_rounding_moves_a_neighbour_by_at_most_the_stated_sensitivity(
    dims: int, seed: int, clip: float
) -> None:
    plan = plan_noise(noise_multiplier=1.0, max_grad_norm=clip, dims=dims)
    gen = np.random.default_rng(seed)  # test inputs only, not noise
    s = gen.normal(size=dims) * 50 * clip
    step = gen.normal(size=dims)
    s2 = s + step / np.linalg.norm(step) * clip  # a neighbour: ‖S − S'‖ = C
    g = plan.granularity
    moved = np.linalg.norm(np.rint(s / g) - np.rint(s2 / g))
    assert moved <= plan.sensitivity + 1e-9


def test_outputs_leave_no_trace_of_the_input_below_the_grid() -> None:
    # The attack on naive samplers: the release's low-order structure depends
    # on the exact input (Mironov 2012). Here two neighbouring sums that differ
    # by less than one grid step give releases that are all multiples of γ, so
    # the residue the attacker reads is 0 for both.
    mech = SecureGaussianNoise(noise_multiplier=1.0, max_grad_norm=1.0, dims=1000)
    g = mech.plan.granularity
    base = np.full(1000, 0.123456789)
    for summed in (base, base + 0.37 * g):
        released = mech.privatize(summed)
        assert np.all(np.mod(released, g) == 0.0)


def test_the_residue_attack_works_on_integer_noise_added_without_rounding() -> None:
    # The same adversary against the same exact noise added to the *unrounded*
    # sum reads the input's sub-grid part exactly: the rounding is what stops it.
    mech = SecureGaussianNoise(noise_multiplier=1.0, max_grad_norm=1.0, dims=10)
    g = mech.plan.granularity
    summed = np.full(10, 0.37 * g)
    naive = summed + mech.noise_integers(10) * g
    assert np.allclose(np.mod(naive, g), 0.37 * g)


def test_noise_has_the_planned_spread() -> None:
    mech = SecureGaussianNoise._from_parts(
        noise_multiplier=2.0, max_grad_norm=0.5, dims=20_000, key=bytes(range(32))
    )
    released = mech.privatize(np.zeros(20_000))
    std = mech.plan.granularity * math.sqrt(mech.plan.variance.variance)
    assert released.std() == pytest.approx(std, rel=0.03)
    assert std == pytest.approx(2.0 * 0.5, rel=0.01)


def test_two_mechanisms_draw_different_noise() -> None:
    a = SecureGaussianNoise(noise_multiplier=1.0, max_grad_norm=1.0, dims=64)
    b = SecureGaussianNoise(noise_multiplier=1.0, max_grad_norm=1.0, dims=64)
    assert not np.array_equal(a.privatize(np.zeros(64)), b.privatize(np.zeros(64)))


@pytest.mark.parametrize("sigma", [0.0, -1.0, math.nan, math.inf, True])
def test_bad_noise_multiplier_is_refused(sigma: float) -> None:
    with pytest.raises(ConfigError, match="noise_multiplier"):
        plan_noise(noise_multiplier=sigma, max_grad_norm=1.0, dims=4)


@pytest.mark.parametrize("clip", [0.0, -1.0, math.nan, math.inf])
def test_bad_clip_is_refused(clip: float) -> None:
    with pytest.raises(ConfigError, match="max_grad_norm"):
        plan_noise(noise_multiplier=1.0, max_grad_norm=clip, dims=4)


def test_bad_dims_and_bad_gradients_are_refused() -> None:
    with pytest.raises(ConfigError, match="dims"):
        plan_noise(noise_multiplier=1.0, max_grad_norm=1.0, dims=0)
    mech = SecureGaussianNoise(noise_multiplier=1.0, max_grad_norm=1.0, dims=3)
    with pytest.raises(ConfigError, match="expected 3"):
        mech.privatize(np.zeros(4))
    for bad in (math.nan, math.inf):
        with pytest.raises(ConfigError, match="non-finite"):
            mech.privatize(np.array([0.0, bad, 0.0]))
    with pytest.raises(ConfigError, match="too large"):
        mech.privatize(np.array([0.0, 1e300, 0.0]))


def test_the_mechanism_refuses_pickling() -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(SecureGaussianNoise(noise_multiplier=1.0, max_grad_norm=1.0, dims=3))
