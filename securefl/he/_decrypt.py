"""A site opens an aggregate: recheck who was summed, decrypt, refuse the infeasible.

Why the feasibility check: signatures bind each upload to its sender, but no
one but the sender knows what a ciphertext encrypts. A byte flipped in a
ciphertext, a chunk made under another key, a value a cheating site put
outside the clip, or a sum the server tampered with all decrypt to numbers
that honest inputs cannot produce. Honest inputs are bounded: each site
clips every coordinate of ``(w / max_weight)·Δ`` to ``[-clip, clip]`` (BFV:
to ``[-L, L]`` quantization levels), so a sum of ``n`` of them lies within
``n·clip`` (exactly ``n·L`` for BFV, plus CKKS's encryption error), and each
signed weight lies in ``(0, max_weight]``. An aggregate outside those
bounds is refused with :class:`AbortError` and its result is not applied.
The check cannot see a tampering that stays within the bounds (see
``threat_models/he.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from securefl.errors import AbortError, DataError, IntegrityError, WireError
from securefl.he import _fixed_point
from securefl.he._codec import decrypt_chunks, num_chunks
from securefl.he._context import SecretContext
from securefl.he._messages import parse_aggregate

__all__ = ["OpenedAggregate", "decrypt_aggregate", "decrypt_sum", "open_aggregate"]

#: CKKS error allowance per summand in normalized units: fresh symmetric
#: encryptions at scale 2^40 err by about 1e-9 (docs/he.md); 2^-20 ≈ 1e-6 is
#: three orders of magnitude above that and far below any value clipping allows.
CKKS_SLACK = 2.0**-20


@dataclass(frozen=True)
class OpenedAggregate:
    """A decrypted aggregate whose summands were checked: ``Σ w·Δ`` and ``Σ w``."""

    round: int
    sites: tuple[str, ...]
    total_weight: float
    weighted_sum: npt.NDArray[np.float64]

    def mean(self) -> npt.NDArray[np.float64]:
        """The weighted mean update ``Σ w·Δ / Σ w``."""
        return self.weighted_sum / self.total_weight


def _infeasible(round_id: int, why: str) -> AbortError:
    return AbortError(
        f"refusing the he aggregate of round {round_id}: {why}; it cannot come from honest "
        "inputs (a tampered ciphertext, another key, or a site beyond its clip)"
    )


def open_aggregate(
    secret: SecretContext,
    encrypted_sum: bytes,
    dimension: int,
    *,
    roster: Mapping[str, bytes],
    federation: str,
) -> OpenedAggregate:
    """Recheck the signed upload headers, decrypt, and check the sum is feasible."""
    preset = secret.preset
    obj = parse_aggregate(encrypted_sum, chunks=num_chunks(preset, dimension))
    if obj["preset"] != preset.name or obj["key_id"] != secret.key_id:
        raise IntegrityError("aggregate was made under another preset or key")
    if obj["dimension"] != dimension:
        raise WireError(f"aggregate has dimension {obj['dimension']}, expected {dimension}")
    round_id, scale, uploads = obj["round"], obj["weight_scale"], obj["uploads"]
    sites = tuple(u.site for u in uploads)
    if len(set(sites)) < 2 or len(set(sites)) != len(sites):
        raise AbortError("refusing to decrypt an aggregate of fewer than two distinct sites")
    n = len(sites)
    if n > preset.max_sites:
        raise _infeasible(round_id, f"{n} summands exceed the preset's {preset.max_sites}")
    for u in uploads:
        if u.weight > scale:
            raise _infeasible(round_id, f"{u.site}'s weight {u.weight} exceeds max_weight {scale}")
        u.verify(
            roster=roster,
            federation=federation,
            round_id=round_id,
            key_id=secret.key_id,
            preset=preset.name,
            dimension=dimension,
            max_weight=scale,
        )
    raw = decrypt_chunks(secret, obj["chunks"], dimension)[:dimension]
    if preset.scheme == "bfv":
        assert preset.plain_modulus is not None
        t, levels = preset.plain_modulus, preset.quant_levels
        centred = np.where(raw > t // 2, raw - t, raw)
        top = int(np.max(np.abs(centred))) if centred.size else 0
        if top > n * levels:
            raise _infeasible(round_id, f"a coordinate of {top} levels exceeds {n}·{levels}")
        normalized = _fixed_point.dequantize_sum(
            raw, clip=secret.clip, levels=levels, summands=n, modulus=t
        )
    else:
        normalized = raw.astype(np.float64)
        bound = n * (secret.clip + CKKS_SLACK)
        finite = bool(np.all(np.isfinite(normalized)))
        peak = float(np.max(np.abs(normalized))) if finite and normalized.size else 0.0
        if not finite or peak > bound:
            raise _infeasible(
                round_id, f"a coordinate of {peak:.3g} exceeds {n}·clip = {bound:.3g}"
            )
    return OpenedAggregate(
        round=round_id,
        sites=sites,
        total_weight=float(sum(u.weight for u in uploads)),
        weighted_sum=normalized * scale,
    )


def decrypt_sum(
    secret_context: SecretContext,
    encrypted_sum: bytes,
    dimension: int,
    *,
    roster: Mapping[str, bytes],
    federation: str,
) -> npt.NDArray[np.float64]:
    """Decrypt an aggregate blob to ``Σ w·Δ`` (float64), after every check of ``open_aggregate``."""
    opened = open_aggregate(
        secret_context, encrypted_sum, dimension, roster=roster, federation=federation
    )
    return opened.weighted_sum


def decrypt_aggregate(
    secret_context: SecretContext,
    encrypted_sum: bytes,
    total_weight: float,
    dimension: int,
    *,
    roster: Mapping[str, bytes],
    federation: str,
) -> npt.NDArray[np.float64]:
    """The weighted mean update ``Σ w·Δ / Σ w``, decrypted at a site.

    ``total_weight`` (what the server announced) must equal the sum of the
    weights the summed sites signed.
    """
    if not total_weight > 0:
        raise DataError("total weight must be positive")
    opened = open_aggregate(
        secret_context, encrypted_sum, dimension, roster=roster, federation=federation
    )
    if not np.isclose(opened.total_weight, total_weight, rtol=1e-12, atol=0.0):
        raise IntegrityError("announced total weight differs from the weights the sites signed")
    return opened.mean()
