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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from securefl.errors import ConfigError

__all__ = ["KINDS", "SAMPLINGS", "DPEvent"]

#: Event kinds securefl records.
KINDS = ("dpsgd", "gaussian")

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
