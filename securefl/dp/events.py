"""One privacy-relevant release at a site, as an immutable record.

A :class:`DPEvent` describes *what was done* to a site's data, never *how much
privacy it cost*: the cost (ε at a given δ) is recomputed from events by
:mod:`securefl.dp.accounting`. Keeping the two apart is what lets an auditor
check a site's claims from its records alone, with any accountant, including
one that securefl does not ship.

Two kinds exist:

``kind="dpsgd"``
    One round of DP-SGD at one site: ``steps`` optimizer steps, each on a
    Poisson-sampled batch (every record joins independently with probability
    ``sample_rate``), per-sample gradients clipped to L2 norm ``max_grad_norm``,
    Gaussian noise of standard deviation ``noise_multiplier * max_grad_norm``
    added to the sum.

``kind="gaussian"``
    A one-off Gaussian mechanism on statistics, e.g. federated feature
    standardisation (sums and sums of squares of clipped features). Every
    record takes part, so ``sample_rate`` must be 1; ``max_grad_norm`` is the
    L2 sensitivity of the released vector, and the noise standard deviation is
    ``noise_multiplier * max_grad_norm``.

``kind="skellam"`` (:class:`SkellamEvent`)
    Distributed DP: each round one DP-SGD step over the union of the sites'
    Poisson samples, every site adding a share of Skellam noise to its
    integer-rounded clipped sum before secure aggregation. The sum the server
    unmasks carries Skellam noise of total variance ``mu_total`` (integer
    units) whenever at least ``shares`` honest sites are in it. The event
    carries the mechanism's own parameters (``mu_total``, the L1 and L2
    sensitivities in integer units, ``shares`` = t − c) and is accounted with
    the Skellam RDP bound (:mod:`securefl.dp.skellam_accounting`).
    ``noise_multiplier`` is √mu_total / l2_sensitivity, the Gaussian-equivalent
    multiplier, checked on construction, so code that only reads σ still
    reads the right number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from securefl.errors import ConfigError

__all__ = ["KINDS", "SAMPLINGS", "DPEvent", "SkellamEvent"]

#: Event kinds securefl records.
KINDS = ("dpsgd", "gaussian", "skellam")

#: Batch sampling schemes that can be *recorded*. Only ``"poisson"`` has an
#: accountant: an event with ``"shuffle"`` can be written down honestly, but
#: :func:`securefl.dp.accounting.epsilon` refuses it (fail closed), because the
#: subsampling amplification that the accountants assume does not hold.
SAMPLINGS = ("poisson", "shuffle")


def _finite_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"DPEvent.{name} must be a number, got {type(value).__name__}")
    try:
        out = float(value)
    except OverflowError:  # an integer too large for a float (JSON integers are unbounded)
        raise ConfigError(f"DPEvent.{name} is too large to be a float") from None
    if not math.isfinite(out):
        raise ConfigError(f"DPEvent.{name} must be finite, got {value!r}")
    return out


@dataclass(frozen=True, kw_only=True)
class DPEvent:
    """One round's private training (or one Gaussian release) at one site.

    Validated on construction: an invalid value raises
    :class:`~securefl.errors.ConfigError` naming the field, so a malformed
    event can never reach a ledger.

    Args:
        noise_multiplier: σ, noise standard deviation divided by the clipping
            norm (the sensitivity). Must be > 0.
        sample_rate: q, the Poisson sampling probability of one record per
            step, in (0, 1]. Must be exactly 1 for ``kind="gaussian"``.
        steps: number of noisy steps (releases) composed in this event, ≥ 1.
        max_grad_norm: per-sample clipping norm C (sensitivity), > 0. It does
            not change ε, but it is part of what the site promised and an
            auditor checks it against the site's configuration.
        sampling: ``"poisson"`` (accountable) or ``"shuffle"`` (recorded but
            refused by every accountant).
        secure_rng: whether noise and sampling came from a cryptographically
            secure generator. Recorded, not enforced: see threat_models/dp.md.
        kind: ``"dpsgd"`` or ``"gaussian"``.
    """

    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    sampling: str = "poisson"
    secure_rng: bool
    kind: str = "dpsgd"

    def __post_init__(self) -> None:
        sigma = _finite_float("noise_multiplier", self.noise_multiplier)
        q = _finite_float("sample_rate", self.sample_rate)
        clip = _finite_float("max_grad_norm", self.max_grad_norm)
        if sigma <= 0:
            raise ConfigError(f"DPEvent.noise_multiplier must be > 0, got {sigma}")
        if not 0.0 < q <= 1.0:
            raise ConfigError(f"DPEvent.sample_rate must be in (0, 1], got {q}")
        if clip <= 0:
            raise ConfigError(f"DPEvent.max_grad_norm must be > 0, got {clip}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"DPEvent.steps must be an integer >= 1, got {self.steps!r}")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"DPEvent.sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if not isinstance(self.secure_rng, bool):
            raise ConfigError(f"DPEvent.secure_rng must be a bool, got {self.secure_rng!r}")
        if self.kind not in KINDS:
            raise ConfigError(f"DPEvent.kind must be one of {KINDS}, got {self.kind!r}")
        if (self.kind == "skellam") != isinstance(self, SkellamEvent):
            raise ConfigError(
                "DPEvent.kind='skellam' is the distributed mechanism: build it as a "
                "SkellamEvent, which carries mu_total, the sensitivities and shares"
            )
        if self.kind == "gaussian" and q != 1.0:
            raise ConfigError(
                f"DPEvent.sample_rate must be 1 for kind='gaussian' (every record "
                f"contributes to the statistic), got {q}"
            )
        # Normalise ints given for float fields, so equal events compare and hash equal.
        object.__setattr__(self, "noise_multiplier", sigma)
        object.__setattr__(self, "sample_rate", q)
        object.__setattr__(self, "max_grad_norm", clip)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict with every field; :meth:`from_dict` inverts it exactly."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DPEvent:
        """Rebuild an event; unknown or missing keys raise ConfigError.

        Strict on purpose: a record written by a newer version with a field we
        do not understand must not be silently accounted without it.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"DPEvent.from_dict needs a dict, got {type(data).__name__}")
        if cls is DPEvent and data.get("kind") == "skellam":
            return SkellamEvent.from_dict(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"DPEvent.from_dict: unknown keys {unknown}")
        try:
            return cls(**data)
        except TypeError as exc:  # a missing required field
            raise ConfigError(f"DPEvent.from_dict: {exc}") from None

    def to_dp_accounting(self) -> Any:
        """The equivalent event in Google's ``dp_accounting`` library.

        The mapping, which lets an auditor recompute ε without securefl::

            kind="dpsgd", sampling="poisson"  ->
                SelfComposedDpEvent(
                    PoissonSampledDpEvent(sample_rate, GaussianDpEvent(noise_multiplier)),
                    steps)
            kind="gaussian"  (sample_rate == 1)  ->
                SelfComposedDpEvent(GaussianDpEvent(noise_multiplier), steps)

        ``GaussianDpEvent(σ)`` is the Gaussian mechanism with sensitivity 1 and
        noise standard deviation σ; scaling both by ``max_grad_norm`` leaves the
        privacy loss unchanged, which is why the clipping norm does not appear.
        Poisson sampling with probability 1 is the identity, so the two kinds
        agree when ``sample_rate == 1``.

        ``sampling="shuffle"`` maps to ``NonPrivateDpEvent``: no accountant can
        bound it, and dp_accounting reports ε = ∞ for it (fail closed).
        """
        import dp_accounting

        if self.sampling != "poisson":
            return dp_accounting.NonPrivateDpEvent()
        inner = dp_accounting.GaussianDpEvent(self.noise_multiplier)
        if self.kind == "dpsgd":
            inner = dp_accounting.PoissonSampledDpEvent(self.sample_rate, inner)
        return dp_accounting.SelfComposedDpEvent(inner, self.steps)


@dataclass(frozen=True, kw_only=True)
class SkellamEvent(DPEvent):
    """Rounds of the distributed Skellam mechanism, as one site records them.

    Validated on construction like :class:`DPEvent`. Build one with
    :meth:`create`, which derives ``noise_multiplier``.

    Args:
        mu_total: variance of the Skellam noise in the unmasked sum, per
            coordinate, in integer units (> 0).
        l1_sensitivity: L1 norm bound of one record's effect on the integer
            vector a site submits (> 0).
        l2_sensitivity: its L2 norm bound (> 0).
        shares: t − c, the fewest honest sites whose shares the sum is
            guaranteed to hold; each site adds variance ``mu_total / shares``.
        sample_rate, steps, max_grad_norm, sampling, secure_rng: as for
            :class:`DPEvent` (``max_grad_norm`` is the clip C before scaling).
    """

    mu_total: float
    l1_sensitivity: float
    l2_sensitivity: float
    shares: int
    kind: str = "skellam"

    def __post_init__(self) -> None:
        mu = _finite_float("mu_total", self.mu_total)
        l1 = _finite_float("l1_sensitivity", self.l1_sensitivity)
        l2 = _finite_float("l2_sensitivity", self.l2_sensitivity)
        for name, value in (("mu_total", mu), ("l1_sensitivity", l1), ("l2_sensitivity", l2)):
            if value <= 0:
                raise ConfigError(f"DPEvent.{name} must be > 0, got {value}")
        if isinstance(self.shares, bool) or not isinstance(self.shares, int) or self.shares < 1:
            raise ConfigError(f"DPEvent.shares must be an integer >= 1, got {self.shares!r}")
        object.__setattr__(self, "mu_total", mu)
        object.__setattr__(self, "l1_sensitivity", l1)
        object.__setattr__(self, "l2_sensitivity", l2)
        super().__post_init__()
        derived = math.sqrt(mu) / l2
        if not math.isclose(self.noise_multiplier, derived, rel_tol=1e-9):
            raise ConfigError(
                f"DPEvent.noise_multiplier must be sqrt(mu_total) / l2_sensitivity = "
                f"{derived!r} for kind='skellam', got {self.noise_multiplier!r}"
            )

    @classmethod
    def create(
        cls,
        *,
        mu_total: float,
        l1_sensitivity: float,
        l2_sensitivity: float,
        shares: int,
        sample_rate: float,
        steps: int,
        max_grad_norm: float,
        secure_rng: bool,
        sampling: str = "poisson",
    ) -> SkellamEvent:
        """A validated event, ``noise_multiplier`` derived from the mechanism's parameters."""
        mu = _finite_float("mu_total", mu_total)
        l2 = _finite_float("l2_sensitivity", l2_sensitivity)
        derived = math.sqrt(mu) / l2 if mu > 0 and l2 > 0 else 1.0  # refused by the constructor
        return cls(
            noise_multiplier=derived,
            mu_total=mu_total,
            l1_sensitivity=l1_sensitivity,
            l2_sensitivity=l2_sensitivity,
            shares=shares,
            sample_rate=sample_rate,
            steps=steps,
            max_grad_norm=max_grad_norm,
            secure_rng=secure_rng,
            sampling=sampling,
        )

    def share_event(self) -> SkellamEvent:
        """What one site's update alone carries if masking fails: its own share.

        Beyond c colluders the masks come off and a site's update is seen with
        only the noise it added, variance ``mu_total / shares`` (standard
        deviation σ/√(t − c)), under the same sensitivities and sampling.
        """
        return SkellamEvent.create(
            mu_total=self.mu_total / self.shares,
            l1_sensitivity=self.l1_sensitivity,
            l2_sensitivity=self.l2_sensitivity,
            shares=1,
            sample_rate=self.sample_rate,
            steps=self.steps,
            max_grad_norm=self.max_grad_norm,
            secure_rng=self.secure_rng,
            sampling=self.sampling,
        )

    def to_dp_accounting(self) -> Any:
        """dp-accounting has no Skellam event: refused rather than approximated."""
        raise ConfigError(
            "dp-accounting has no Skellam event; account kind='skellam' with "
            "securefl.dp.skellam_accounting (securefl.dp.epsilon does)"
        )
