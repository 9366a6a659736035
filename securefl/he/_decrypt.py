"""A site opens an aggregate: recheck every signed header, decrypt, refuse the infeasible.

What the headers let a site check: who was summed (distinct roster sites,
each having signed its weight, round start and chunk digest), that there
are enough of them, that they all trained from this site's round start, and
that this site's own upload, the very bytes it sent, is among them. What
they cannot show: that the encrypted sum is exactly those uploads added.
Checking that needs the individual ciphertexts, which no site may see
(every site holds the secret key); a cheating server can therefore sum a
subset, a repeat or its own encryptions within the feasibility bound. That
is no weaker than he mode's trust assumption (a server colluding with any
one site reads every update); see ``threat_models/he.md``.

Why the feasibility check: signatures bind each upload to its sender, but no
one but the sender knows what a ciphertext encrypts. A chunk a cheating site
made under another key, or values it put outside the clip, decrypt to
numbers that honest inputs cannot produce. Honest inputs are bounded: each site
clips every coordinate of ``(w / max_weight)·Δ`` to ``[-clip, clip]`` (BFV:
to ``[-L, L]`` quantization levels), so a sum of ``n`` of them lies within
``n·clip`` (exactly ``n·L`` for BFV, plus CKKS's encryption error), and each
signed weight lies in ``(0, max_weight]``. An aggregate outside those
bounds is refused with :class:`AbortError` and its result is not applied.
The check cannot see a cheating site that stays within the bounds: one site
can still move the sum by up to about ``n·clip`` (see ``threat_models/he.md``).
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
from securefl.he._messages import UploadHeader, parse_aggregate
from securefl.he._server import MIN_SUMMANDS
from securefl.he._site import OwnUpload

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


def _check_summands(
    round_id: int,
    uploads: list[UploadHeader],
    max_sites: int,
    min_sites: int,
    site: str | None,
    took_part: Mapping[int, OwnUpload] | None,
) -> tuple[str, ...]:
    """Who was summed: distinct, enough, one round start, and the opener's own upload."""
    sites = tuple(u.site for u in uploads)
    needed = max(min_sites, MIN_SUMMANDS)
    if len(set(sites)) != len(sites):
        raise AbortError(f"aggregate of round {round_id} counts a site twice")
    if len(sites) < needed:
        raise AbortError(
            f"refusing to decrypt a sum of {len(sites)} uploads: this site needs at least "
            f"{needed} (a sum of two reveals each summand to the other)"
        )
    if len(sites) > max_sites:
        raise _infeasible(round_id, f"{len(sites)} summands exceed the preset's {max_sites}")
    digests = {u.round_digest for u in uploads}
    if len(digests) != 1:
        raise IntegrityError(f"the sites summed in round {round_id} were given different rounds")
    if site is not None and took_part is not None and round_id in took_part:
        own = took_part[round_id]
        if not any(u.site == site and u.digest == own.digest for u in uploads):
            raise IntegrityError(f"the sum of round {round_id} leaves out this site's own upload")
        if not set(sites) <= set(own.cohort):
            raise IntegrityError(f"the sum of round {round_id} names sites outside its cohort")
        if digests != {own.round_digest}:
            raise IntegrityError(
                f"the sites summed in round {round_id} were given another round than this site"
            )
    return sites


def open_aggregate(
    secret: SecretContext,
    encrypted_sum: bytes,
    dimension: int,
    *,
    roster: Mapping[str, bytes],
    federation: str,
    max_weight: float,
    min_sites: int = MIN_SUMMANDS,
    site: str | None = None,
    took_part: Mapping[int, OwnUpload] | None = None,
) -> OpenedAggregate:
    """Recheck every signed header, decrypt the server's sum, and check it is feasible.

    ``max_weight`` and ``min_sites`` are the opening site's own settings (an
    aggregate scaled by another ``max_weight``, or of fewer than
    ``max(min_sites, 3)`` uploads, is refused). ``site`` with ``took_part``
    (round -> the upload it signed, :attr:`HESiteMode.took_part`) makes the
    site refuse a sum of a round it took part in whose headers leave out its
    own upload (by the chunk digest it sent), name a site outside that
    round's cohort, or name another round start.
    Every header must carry the same round-start digest. Not checked, and
    not checkable here: that the sum is exactly the listed uploads added.
    """
    preset = secret.preset
    obj = parse_aggregate(
        encrypted_sum, chunks=num_chunks(preset, dimension), max_uploads=preset.max_sites
    )
    if obj["preset"] != preset.name or obj["key_id"] != secret.key_id:
        raise IntegrityError("aggregate was made under another preset or key")
    if obj["dimension"] != dimension:
        raise WireError(f"aggregate has dimension {obj['dimension']}, expected {dimension}")
    round_id, scale, uploads = obj["round"], obj["weight_scale"], obj["uploads"]
    if scale != max_weight:
        raise IntegrityError(
            f"aggregate of round {round_id} is scaled by max_weight={scale:g}, but this site's "
            f"configuration says {max_weight:g}"
        )
    sites = _check_summands(round_id, uploads, preset.max_sites, min_sites, site, took_part)
    n = len(sites)
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
    max_weight: float,
    min_sites: int = MIN_SUMMANDS,
) -> npt.NDArray[np.float64]:
    """Decrypt an aggregate blob to ``Σ w·Δ`` (float64), after every check of ``open_aggregate``."""
    opened = open_aggregate(
        secret_context,
        encrypted_sum,
        dimension,
        roster=roster,
        federation=federation,
        max_weight=max_weight,
        min_sites=min_sites,
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
    max_weight: float,
    min_sites: int = MIN_SUMMANDS,
) -> npt.NDArray[np.float64]:
    """The weighted mean update ``Σ w·Δ / Σ w``, decrypted at a site.

    ``total_weight`` (what the server announced) must equal the sum of the
    weights the summed sites signed.
    """
    if not total_weight > 0:
        raise DataError("total weight must be positive")
    opened = open_aggregate(
        secret_context,
        encrypted_sum,
        dimension,
        roster=roster,
        federation=federation,
        max_weight=max_weight,
        min_sites=min_sites,
    )
    if not np.isclose(opened.total_weight, total_weight, rtol=1e-12, atol=0.0):
        raise IntegrityError("announced total weight differs from the weights the sites signed")
    return opened.mean()
