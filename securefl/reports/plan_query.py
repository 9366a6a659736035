"""``plan``'s questions from flags: ε for a noise, the noise for an ε, both privacy models.

Why apart from :mod:`securefl.reports.plan`: these answer one question about
(q, T, δ) without a federation file, and they grew a second privacy model.

Two privacy models, side by side (:func:`compare_privacy_models`):

``local`` (DP-SGD at each site, the default today)
    Each site adds Gaussian noise of multiplier σ to its own clipped sums:
    each update is private on its own, and ε is each site's own.
``distributed`` (Skellam shares under secure aggregation)
    Each site adds a share of Skellam noise to its integer-rounded clipped
    sum; the unmasked sum of at least ``shares`` = t − c honest sites carries
    the full noise, so ε is the *central* ε of that sum, accounted with the
    Skellam RDP bound (:mod:`securefl.dp.skellam_accounting`). It holds while
    secure aggregation holds; the masking-failure ε is what each site's share
    alone gives.

For the same per-site noise (each site adds multiplier σ, in either model)
the distributed sum carries √shares times the noise; for the same ε each site
adds about 1/√shares of the noise local DP-SGD needs. Rounding to integers
adds to the sensitivity: with the clip norm C worth ``clip_units`` integer
units and d coordinates, Δ₂ = clip_units + √d (rounding each coordinate moves
it by less than 1) and Δ₁ = √d·Δ₂ (Cauchy-Schwarz; the other bound an
integer vector has, Δ₂², is larger here since Δ₂ > √d).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from securefl.config import ACCOUNTANTS
from securefl.dp.events import DPEvent
from securefl.errors import ConfigError

__all__ = [
    "PrivacyModels",
    "check_query",
    "compare_privacy_models",
    "noise_multipliers",
    "query_epsilons",
    "rounded_sensitivities",
]


def check_query(
    *,
    sample_rate: float,
    steps: int,
    delta: float,
    noise_multiplier: float | None = None,
    epsilon: float | None = None,
    num_examples: int | None = None,
) -> None:
    """Refuse values no accountant can use, naming the flag.

    With ``num_examples`` (the smallest site's number of records), δ must
    also be below 1/n (:func:`securefl.dp.check_delta`).
    """
    if not (math.isfinite(sample_rate) and 0 < sample_rate <= 1):
        raise ConfigError(f"--sample-rate must be in (0, 1], got {sample_rate}")
    if steps < 1:
        raise ConfigError(f"--steps must be an integer >= 1, got {steps}")
    if not (math.isfinite(delta) and 0 < delta < 1):
        raise ConfigError(f"--delta must be in (0, 1), got {delta}")
    if num_examples is not None:
        from securefl.dp.accounting import check_delta

        check_delta(delta, num_examples=num_examples, name="--delta")
    if noise_multiplier is not None and not (
        math.isfinite(noise_multiplier) and noise_multiplier > 0
    ):
        raise ConfigError(f"--noise-multiplier must be > 0, got {noise_multiplier}")
    if epsilon is not None and not (math.isfinite(epsilon) and epsilon > 0):
        raise ConfigError(f"--epsilon must be > 0, got {epsilon}")


def _epsilon(sigma: float, q: float, steps: int, delta: float, accountant: str) -> float:
    from securefl.dp.accounting import epsilon

    event = DPEvent(
        noise_multiplier=sigma, sample_rate=q, steps=steps, max_grad_norm=1.0, secure_rng=True
    )
    return float(epsilon([event], delta=delta, accountant=accountant))


def query_epsilons(
    *,
    sample_rate: float,
    noise_multiplier: float,
    steps: int,
    delta: float,
    accountants: Sequence[str] = ACCOUNTANTS,
    num_examples: int | None = None,
) -> dict[str, float]:
    """ε of ``steps`` Poisson-sampled Gaussian steps under each accountant (never below 0)."""
    check_query(
        sample_rate=sample_rate,
        steps=steps,
        delta=delta,
        noise_multiplier=noise_multiplier,
        num_examples=num_examples,
    )
    return {a: _epsilon(noise_multiplier, sample_rate, steps, delta, a) for a in accountants}


def noise_multipliers(
    *,
    sample_rate: float,
    target_epsilon: float,
    steps: int,
    delta: float,
    accountants: Sequence[str] = ACCOUNTANTS,
    num_examples: int | None = None,
) -> dict[str, float]:
    """The noise multiplier each accountant needs to stay within ``target_epsilon``."""
    from securefl.dp.calibration import calibrate_noise

    check_query(
        sample_rate=sample_rate,
        steps=steps,
        delta=delta,
        epsilon=target_epsilon,
        num_examples=num_examples,
    )
    return {
        a: float(
            calibrate_noise(
                target_epsilon=target_epsilon,
                delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=a,
            )
        )
        for a in accountants
    }


def rounded_sensitivities(*, clip_units: float, dimension: int) -> tuple[float, float]:
    """(Δ₁, Δ₂) of a clipped vector scaled so C = ``clip_units`` and rounded to integers.

    The mechanism's own bound (:func:`securefl.dp.distributed.sensitivity` at
    scale 1), so ``plan`` answers for exactly what the sites send; the checks
    here only name the command-line options.
    """
    from securefl.dp.distributed import sensitivity

    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise ConfigError(f"--dimension must be an integer >= 1, got {dimension!r}")
    if not (math.isfinite(clip_units) and clip_units > 0):
        raise ConfigError(f"--clip-units must be a finite number > 0, got {clip_units!r}")
    bound = sensitivity(clip=clip_units, scale=1.0, dimension=dimension)
    return bound.l1, bound.l2


@dataclass(frozen=True)
class PrivacyModels:
    """One (q, T, δ) question answered for local and for distributed DP, side by side.

    Noise multipliers are noise standard deviations divided by the clip norm C.
    ``question`` is ``"same_noise"`` (each site adds multiplier σ in both
    models: compare ε) or ``"same_epsilon"`` (compare the noise each site adds).
    """

    question: str
    sample_rate: float
    steps: int
    delta: float
    accountant: str
    shares: int
    dimension: int
    clip_units: float
    l1_sensitivity: float
    l2_sensitivity: float
    local_noise_multiplier: float
    local_epsilon: float
    share_noise_multiplier: float
    central_noise_multiplier: float
    mu_total: float
    distributed_epsilon: float
    masking_failure_epsilon: float

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return asdict(self)


def compare_privacy_models(
    *,
    sample_rate: float,
    steps: int,
    delta: float,
    shares: int,
    dimension: int,
    clip_units: float,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    accountant: str = "prv",
    num_examples: int | None = None,
) -> PrivacyModels:
    """Local DP-SGD next to distributed Skellam DP for the same noise or the same ε.

    Give exactly one of ``noise_multiplier`` (each site's σ; the distributed
    sum then holds ``shares`` such shares) and ``target_epsilon`` (each model
    calibrated to it). See the module doc for the sensitivities.
    """
    from securefl.dp.calibration import calibrate_noise
    from securefl.dp.skellam_accounting import calibrate_skellam_mu, skellam_epsilon

    if (noise_multiplier is None) == (target_epsilon is None):
        raise ConfigError("give exactly one of --noise-multiplier and --epsilon")
    if isinstance(shares, bool) or not isinstance(shares, int) or shares < 1:
        raise ConfigError(f"--shares (t - c) must be an integer >= 1, got {shares!r}")
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")
    check_query(
        sample_rate=sample_rate,
        steps=steps,
        delta=delta,
        noise_multiplier=noise_multiplier,
        epsilon=target_epsilon,
        num_examples=num_examples,
    )
    l1, l2 = rounded_sensitivities(clip_units=clip_units, dimension=dimension)

    def central(mu: float) -> float:
        return skellam_epsilon(
            mu=mu,
            l1_sensitivity=l1,
            l2_sensitivity=l2,
            sample_rate=sample_rate,
            steps=steps,
            delta=delta,
        )

    if noise_multiplier is not None:
        question, sigma = "same_noise", noise_multiplier
        mu = shares * (sigma * clip_units) ** 2
        local = _epsilon(sigma, sample_rate, steps, delta, accountant)
    else:
        assert target_epsilon is not None
        question = "same_epsilon"
        sigma = calibrate_noise(
            target_epsilon=target_epsilon,
            delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=accountant,
        )
        local = _epsilon(sigma, sample_rate, steps, delta, accountant)
        mu = calibrate_skellam_mu(
            target_epsilon=target_epsilon,
            delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            l1_sensitivity=l1,
            l2_sensitivity=l2,
        )
    return PrivacyModels(
        question=question,
        sample_rate=sample_rate,
        steps=steps,
        delta=delta,
        accountant=accountant,
        shares=shares,
        dimension=dimension,
        clip_units=clip_units,
        l1_sensitivity=l1,
        l2_sensitivity=l2,
        local_noise_multiplier=float(sigma),
        local_epsilon=local,
        share_noise_multiplier=math.sqrt(mu / shares) / clip_units,
        central_noise_multiplier=math.sqrt(mu) / clip_units,
        mu_total=mu,
        distributed_epsilon=central(mu),
        masking_failure_epsilon=central(mu / shares),
    )
