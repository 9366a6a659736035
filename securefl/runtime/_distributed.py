"""Distributed DP, the parts every party computes alike: the public plan and the server's step.

With ``privacy = "distributed"`` (``docs/distributed_dp.md``) a round is one
DP-SGD step over the union of the sites' Poisson samples. Everything a party
needs to agree on is derived here from the federation file alone, so a server
and each site reach the same numbers without trusting one another:

* the sample rate q and the public expected batch size B̄ = q × records
  (``[distributed]``), and the integer scale γ;
* the central Skellam variance μ, calibrated once per run for
  ``rounds.max_rounds`` steps at q so the federation's (ε, δ) is met, rounded
  up to an integer so every share is exact;
* the sensitivities of what a site sends (:func:`securefl.dp.distributed.sensitivity`);
* the ring, sized for the largest sum of a full federation in which every
  site adds the largest share (μ, when t − c = 1).

The server's side is a strategy wrapper: it turns the unmasked integer sum
into the averaged noisy gradient, ĝ = Σ / (γ · B̄), and hands the step
−lr · ĝ to the federation's strategy as its mean update. Dividing by a public
B̄ rather than the realised batch keeps per-site batch sizes private and is
the normalisation central DP-SGD (Opacus's ``expected_batch_size``) uses.
Everything after the unmasking is post-processing of a private release.

This module imports no torch: the server never loads it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from securefl.dp.distributed import (
    NoiseShare,
    batch_bound,
    noise_share,
    ring_plan,
    sensitivity,
    signal_bound,
)
from securefl.dp.events import SkellamEvent
from securefl.dp.skellam_accounting import calibrate_skellam_mu
from securefl.errors import ConfigError, ProtocolError
from securefl.strategy.base import Strategy

if TYPE_CHECKING:
    from securefl.config import FederationConfig
    from securefl.hazmat.sign import SigningKey
    from securefl.secagg import BlsRoster, IntegerRing, MaskConfig

__all__ = [
    "ANNOUNCED_KEY",
    "DistributedPlan",
    "DistributedStep",
    "check_announced",
    "distributed_server_mode",
    "distributed_site_mode",
]

#: The round-config key under which the server announces the plan's public numbers.
ANNOUNCED_KEY = "distributed"
#: The wrap probability the ring is sized for (a wrap costs one step, never privacy).
RING_FAILURE = 2.0**-40
#: Each example's gradient is clipped a hair below C, so float error cannot pass C.
CLIP_MARGIN = 1.0 - 2.0**-20


@dataclass(frozen=True, kw_only=True)
class DistributedPlan:
    """The public numbers of one distributed-DP run, identical at every party."""

    sample_rate: float
    expected_batch_size: float
    scale: float
    clip: float
    dimension: int
    federation_size: int
    mu_total: int
    l1_sensitivity: float
    l2_sensitivity: float
    mask: MaskConfig
    ring_bits: int
    ring_bound: int
    learning_rate: float
    secure_rng: bool

    @classmethod
    def from_config(
        cls, config: FederationConfig, *, dimension: int, federation_size: int
    ) -> DistributedPlan:
        """Derive the plan from the federation file, the model's size and the roster's."""
        if config.privacy != "distributed":
            raise ConfigError('a distributed plan needs federation.privacy = "distributed"')
        dd, dp = config.distributed, config.dp
        assert dd.sample_rate is not None and dd.records is not None  # checked by the config
        if dp.noise_multiplier is not None:
            raise ConfigError(
                'dp.noise_multiplier is calibrated from dp.epsilon with privacy = "distributed";'
                " remove it"
            )
        sens = sensitivity(clip=dp.max_grad_norm, scale=dd.scale, dimension=dimension)
        mu = _calibrated_mu(
            dp.epsilon, dp.delta, dd.sample_rate, config.rounds.max_rounds, sens.l1, sens.l2
        )
        ring = ring_plan(
            dimension=dimension,
            signal=signal_bound(
                clip=dp.max_grad_norm,
                scale=dd.scale,
                batch=batch_bound(records=dd.records, rate=dd.sample_rate, failure=RING_FAILURE),
                sites=federation_size,
            ),
            noise_variance=federation_size * mu,  # every site adds at most μ (t − c ≥ 1)
            failure=RING_FAILURE,
        )
        return cls(
            sample_rate=dd.sample_rate,
            expected_batch_size=dd.expected_batch_size,
            scale=dd.scale,
            clip=dp.max_grad_norm,
            dimension=dimension,
            federation_size=federation_size,
            mu_total=mu,
            l1_sensitivity=sens.l1,
            l2_sensitivity=sens.l2,
            mask=config.mask,
            ring_bits=ring.bits,
            ring_bound=ring.magnitude_bound,
            learning_rate=config.train.learning_rate,
            secure_rng=dp.secure_rng,
        )

    @property
    def ring(self) -> IntegerRing:
        """The integer path's ring (:class:`securefl.secagg.IntegerRing`)."""
        from securefl.secagg import IntegerRing

        return IntegerRing(bits=max(self.ring_bits, 16), magnitude_bound=self.ring_bound)

    @property
    def noise_multiplier(self) -> float:
        """√μ / Δ₂: the Gaussian-equivalent noise multiplier of the sum."""
        return math.sqrt(self.mu_total) / self.l2_sensitivity

    def announced(self) -> dict[str, Any]:
        """What the server announces with every round; each site compares it with its own."""
        return {
            "sample_rate": self.sample_rate,
            "expected_batch_size": self.expected_batch_size,
            "scale": self.scale,
            "mu_total": self.mu_total,
            "threshold": self.mask.threshold or 0,  # 0: the default policy
            "colluders": self.mask.assumed_colluders(self.federation_size),
        }

    def share(self, *, federation: str, round_id: int, cohort: tuple[str, ...]) -> NoiseShare:
        """This round's noise share, from the site's *own* threshold t and colluders c.

        The share is sized so that c colluders subtracting theirs still leave
        μ, which holds only if the round's masking withstands c colluders
        (:attr:`~securefl.secagg.MaskPlan.colluders_tolerated`, the same count
        for the cohort-wide and the neighbourhood round): a round that
        withstands fewer is refused, before any privacy is reserved.
        """
        plan = self.mask.plan(
            federation=federation,
            round_id=round_id,
            cohort=cohort,
            federation_size=self.federation_size,
        )
        colluders = self.mask.assumed_colluders(self.federation_size)
        if plan.colluders_tolerated < colluders:
            raise ConfigError(
                f"a cohort of {len(cohort)}: its masking withstands {plan.colluders_tolerated} "
                f"colluders, fewer than the {colluders} the distributed noise shares are sized "
                "for (mask.corrupt); lower mask.corrupt"
            )
        return noise_share(Fraction(self.mu_total), threshold=plan.threshold, colluders=colluders)

    def event(self, shares: int) -> SkellamEvent:
        """The ledger's event for one round: one subsampled Skellam release of variance μ."""
        return SkellamEvent.create(
            mu_total=float(self.mu_total),
            l1_sensitivity=self.l1_sensitivity,
            l2_sensitivity=self.l2_sensitivity,
            shares=shares,
            sample_rate=self.sample_rate,
            steps=1,
            max_grad_norm=self.clip,
            secure_rng=self.secure_rng,
        )


@lru_cache(maxsize=64)
def _calibrated_mu(
    epsilon: float, delta: float, rate: float, rounds: int, l1: float, l2: float
) -> int:
    """μ for the planned rounds, cached: the server and every site of a process ask alike."""
    mu = calibrate_skellam_mu(
        target_epsilon=epsilon,
        delta=delta,
        sample_rate=rate,
        steps=rounds,
        l1_sensitivity=l1,
        l2_sensitivity=l2,
    )
    return math.ceil(mu)  # more noise than calibrated, never less


def check_announced(announced: object, own: dict[str, Any]) -> None:
    """Refuse a round whose announced distributed-DP numbers are not the site's own.

    Why each matters: a smaller expected batch size makes the server's step
    larger than the one the federation agreed; a lower threshold, more
    colluders or another sample rate or μ would change what protects the
    site's share. The site uses its own numbers in any case; refusing here
    makes the disagreement visible before any privacy is spent.
    """
    if not isinstance(announced, dict):
        raise ProtocolError(
            'this site runs privacy = "distributed" but the server announced no distributed '
            "DP settings; the server's federation file must say the same"
        )
    for key, value in own.items():
        theirs = announced.get(key)
        if theirs != value:
            raise ProtocolError(
                f"the server announced distributed.{key}={theirs!r} but this site's own "
                f"federation file gives {value!r}; nothing was trained or spent"
            )
    extra = sorted(set(announced) - set(own))
    if extra:
        raise ProtocolError(f"the server announced unknown distributed settings {extra}")


class DistributedStep(Strategy):
    """The server's optimizer step on the unmasked integer sum, then the federation's strategy.

    The aggregate it is handed is Σ (the integer sum, total weight 1). The
    averaged noisy gradient is ĝ = Σ / (γ · B̄); ``inner`` (FedAvg with
    server_lr 1 makes it plain SGD) receives −lr · ĝ as its mean update.
    """

    def __init__(self, inner: Strategy, plan: DistributedPlan) -> None:
        self._inner, self._plan = inner, plan
        self.name = inner.name  # type: ignore[misc]

    def round_config(self, round_number: int) -> dict[str, Any]:
        return {**self._inner.round_config(round_number), ANNOUNCED_KEY: self._plan.announced()}

    def state_dict(self) -> dict[str, npt.NDArray[np.float64]]:
        return self._inner.state_dict()

    def load_state(self, state: dict[str, npt.NDArray[np.float64]]) -> None:
        self._inner.load_state(state)

    def apply(self, params: Any, mean_update: Any, round_number: int) -> Any:
        plan = self._plan
        gradient = np.asarray(mean_update, dtype=np.float64) / (
            plan.scale * plan.expected_batch_size
        )
        return self._inner.apply(params, -plan.learning_rate * gradient, round_number)


def distributed_server_mode(
    plan: DistributedPlan,
    identity_keys: Mapping[str, bytes],
    *,
    bls_roster: BlsRoster | None = None,
) -> Any:
    """The server's half: SecAgg+ on integers in the plan's ring (public keys only).

    ``bls_roster`` (each site's BLS key and proof of possession) is needed
    when the plan's mask runs the neighbourhood round.
    """
    from securefl.modes import site_keys
    from securefl.secagg import IntegerMaskServerMode

    return IntegerMaskServerMode(
        roster=site_keys(identity_keys), config=plan.mask, ring=plan.ring, bls_roster=bls_roster
    )


def distributed_site_mode(
    plan: DistributedPlan,
    *,
    name: str,
    signing_key: SigningKey,
    identity_keys: Mapping[str, bytes],
    state_dir: str | Path,
    bls_roster: BlsRoster | None = None,
) -> Any:
    """One site's half: its integer input masked in the plan's ring (round log in ``state_dir``).

    ``bls_roster``: as :func:`distributed_server_mode`.
    """
    from securefl.modes import site_keys
    from securefl.secagg import IntegerMaskSiteMode

    return IntegerMaskSiteMode(
        site_id=name,
        signing_key=signing_key,
        roster=site_keys(identity_keys),
        state_path=Path(state_dir) / "mask.json",
        config=plan.mask,
        ring=plan.ring,
        bls_roster=bls_roster,
    )
