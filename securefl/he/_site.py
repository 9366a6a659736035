"""The site's half of the ``he`` mode: clip, encrypt, sign, send once.

Protocol: each site sends ``he/update`` = (its weight w in the clear, its
encrypted ``(w / max_weight)·Δ`` in chunks, and its signature over both).
Example counts are public in this design (the server needs Σw to scale the
model and it sees who took part), so sending w in the clear reveals nothing
the round did not already reveal; dividing by ``max_weight`` and clipping
each coordinate to ``[-clip, clip]`` keeps every encrypted coordinate within
the preset's bounds whatever the weights, and gives the sites a bound an
honest aggregate must respect (see :mod:`securefl.he._decrypt`).
"""

from __future__ import annotations

from typing import Any, NamedTuple, NoReturn

import numpy as np
import numpy.typing as npt

from securefl.aggregation.base import AggregationMode, RoundContext, SiteAggregator
from securefl.errors import ConfigError, DataError, ProtocolError
from securefl.hazmat.sign import SigningKey
from securefl.he import _fixed_point
from securefl.he._codec import encrypt_chunks, num_chunks
from securefl.he._context import SecretContext
from securefl.he._messages import STAGE_UPDATE, encode_update
from securefl.he._pool import MIN_CHUNKS_PER_CORE, EncryptPool
from securefl.he._trust import chunks_digest, update_message
from securefl.wire import SERVER, Envelope

__all__ = ["HESite", "HESiteMode", "OwnUpload", "check_cohort"]


class OwnUpload(NamedTuple):
    """What a site remembers of the upload it signed: round start, chunk digest, cohort.

    An aggregate of that round must carry this site's header with exactly
    this digest (the bytes it sent), and only headers of that cohort, or the
    site refuses it.
    """

    round_digest: bytes
    digest: bytes
    cohort: tuple[str, ...]


def check_cohort(ctx: RoundContext, max_sites: int) -> None:
    if len(ctx.cohort) > max_sites:
        raise ConfigError(
            f"a cohort of {len(ctx.cohort)} sites exceeds this HE preset's max_sites={max_sites}"
        )


class HESite(SiteAggregator):
    """A site's half: encrypt once, sign, send once."""

    def __init__(self, mode: HESiteMode, ctx: RoundContext, site_id: str) -> None:
        if site_id not in ctx.cohort:
            raise ConfigError(f"site {site_id!r} is not in this round's cohort")
        check_cohort(ctx, mode.context.preset.max_sites)
        if ctx.max_weight != mode.max_weight:
            # the feasibility bound and the mean both scale with max_weight: the
            # server must not choose it (a huge one hides a tampered sum)
            raise ConfigError(
                f"the round announces max_weight={ctx.max_weight:g} but this site's "
                f"federation configuration says {mode.max_weight:g}; refusing the round"
            )
        self._mode = mode
        self._ctx = ctx
        self._site_id = site_id
        self._done = False

    def _encode(self, vector: npt.NDArray[np.float32], weight: float) -> npt.NDArray[Any]:
        secret = self._mode.context
        preset = secret.preset
        scaled = np.asarray(vector, dtype=np.float64) * (weight / self._ctx.max_weight)
        if not np.all(np.isfinite(scaled)):
            raise DataError("the update holds NaN or infinite values")
        if preset.scheme == "bfv":
            return _fixed_point.quantize(scaled, clip=secret.clip, levels=preset.quant_levels)
        # the context's clip is at most max_abs_sum / max_sites: the sum cannot wrap
        return np.clip(scaled, -secret.clip, secret.clip)

    def submit(self, vector: npt.NDArray[np.float32], weight: float) -> list[Envelope]:
        """Encrypt ``(weight / max_weight)·vector``, sign it and address it to the server."""
        if self._done:
            raise ProtocolError("this site already submitted its update for the round")
        if vector.ndim != 1 or vector.shape[0] != self._ctx.dimension:
            raise DataError(f"update must be a vector of {self._ctx.dimension} values")
        if not (0 < weight <= self._ctx.max_weight):
            raise DataError(f"weight {weight} must lie in (0, {self._ctx.max_weight}]")
        secret, ctx = self._mode.context, self._ctx
        chunks = encrypt_chunks(
            secret,
            self._encode(vector, weight),
            workers=self._mode.workers,
            pool=self._mode.pool(ctx.dimension),
        )
        digest = chunks_digest(chunks)
        message = update_message(
            federation=ctx.federation,
            round_id=ctx.round,
            site=self._site_id,
            key_id=secret.key_id,
            preset=secret.preset.name,
            dimension=ctx.dimension,
            weight=float(weight),
            max_weight=float(ctx.max_weight),
            round_digest=ctx.round_digest,
            digest=digest,
        )
        payload = encode_update(
            preset=secret.preset.name,
            key_id=secret.key_id,
            weight=float(weight),
            dimension=ctx.dimension,
            round_digest=ctx.round_digest,
            chunks=chunks,
            signature=self._mode.signing_key.sign(message),
        )
        self._done = True
        self._mode.took_part[ctx.round] = OwnUpload(ctx.round_digest, digest, tuple(ctx.cohort))
        return [
            Envelope(
                federation=ctx.federation,
                round=ctx.round,
                stage=STAGE_UPDATE,
                sender=self._site_id,
                receiver=SERVER,
                payload=payload,
            )
        ]

    def handle(self, envelope: Envelope) -> list[Envelope]:
        """The server sends nothing to sites in this mode; anything arriving is an error."""
        raise ProtocolError(f"he mode expects no server message, got stage {envelope.stage!r}")


class HESiteMode(AggregationMode):
    """The ``he`` mode as one site configures it: the secret context and its identity key."""

    name = "he"
    hides_updates = True

    def __init__(
        self,
        context: SecretContext,
        *,
        site_id: str,
        signing_key: SigningKey,
        max_weight: float,
        workers: int = 2,
        processes: bool = True,
    ) -> None:
        """``site_id`` signs every upload with ``signing_key`` (its roster identity).

        ``max_weight`` is the federation's weight bound from this site's own
        configuration: a round announcing another is refused, and so is an
        aggregate scaled by another (the server must not choose the scale of
        the feasibility bound).

        ``workers`` cores encrypt each update. With ``processes`` (the default)
        the extra cores are helper processes that each receive the serialized
        secret context through a pipe from this process, once, when the first
        large update is encrypted (or on :meth:`warm_up`); see
        :mod:`securefl.he._pool` for why that is acceptable on a site.
        ``processes=False`` keeps the key in this process and uses threads,
        which TenSEAL mostly serializes on the GIL.
        """
        if not isinstance(context, SecretContext):
            raise ConfigError("HESiteMode needs a SecretContext")
        if not isinstance(signing_key, SigningKey):
            raise ConfigError("HESiteMode needs the site's SigningKey to sign its uploads")
        if workers < 1:
            raise ConfigError("workers must be at least 1")
        if not (isinstance(max_weight, (int, float)) and 0 < max_weight < float("inf")):
            raise ConfigError(f"max_weight must be a positive finite number, got {max_weight!r}")
        self.max_weight = float(max_weight)
        #: round -> the upload this site signed in that round (round start and
        #: chunk digest): an aggregate of such a round must hold that upload.
        self.took_part: dict[int, OwnUpload] = {}
        self.context = context
        self.site_id = site_id
        self.signing_key = signing_key
        self.workers = workers
        self.processes = processes
        self._pool: EncryptPool | None = None

    def pool(self, dimension: int) -> EncryptPool | None:
        """The helper processes for an update of ``dimension`` values, started on first need.

        ``None`` when processes are off, there is one worker, or the update is
        too small for the pipe round trip to pay off.
        """
        if not self.processes or self.workers < 2:
            return None
        if self._pool is None:
            if num_chunks(self.context.preset, dimension) < MIN_CHUNKS_PER_CORE * self.workers:
                return None
            self._pool = EncryptPool(self.context, self.workers - 1)
        return self._pool

    def warm_up(self) -> None:
        """Start the helper processes now (e.g. before training) rather than on the first update."""
        if self.processes and self.workers >= 2:
            if self._pool is None:
                self._pool = EncryptPool(self.context, self.workers - 1)
            self._pool.warm_up()

    def close(self) -> None:
        """Stop the helper processes, if any were started."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def site(self, ctx: RoundContext, site_id: str) -> HESite:
        """The site half for this mode's own site (it cannot sign as another)."""
        if site_id != self.site_id:
            raise ConfigError(f"this HE mode signs as {self.site_id!r}, not {site_id!r}")
        return HESite(self, ctx, site_id)

    def server(self, ctx: RoundContext) -> NoReturn:
        """Refused: the server half must never hold the secret context."""
        raise ConfigError(
            "a site's HE mode holds the secret key; build the server half with "
            "HEServerMode(signed_public_context, roster=..., federation=...)"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("HESiteMode holds a secret key and cannot be pickled")
