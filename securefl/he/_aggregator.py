"""The ``he`` aggregation mode: one stage, the server only adds ciphertexts.

Protocol: each site sends ``he/update`` = (its weight w in the clear, its
encrypted ``(w / max_weight)·Δ`` in chunks). Example counts are public in
this design (the server needs Σw to scale the model and it sees who took
part), so sending w in the clear reveals nothing the round did not already
reveal; dividing by ``max_weight`` keeps every encrypted coordinate within
the preset's bounds whatever the weights. The server adds what arrives in
place and, once every cohort site answered or the deadline passed, releases
the encrypted sum only if at least ``min_sites`` (and never fewer than two)
updates went into it, so no single update is ever decrypted alone. Bad input
from one site (garbage, another key or parameter set, a wrong chunk count,
a wrong stage) is recorded in :attr:`HEServer.rejected` and that site is
simply left out.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from securefl.aggregation.base import (
    AggregateResult,
    AggregationMode,
    RoundContext,
    ServerAggregator,
    SiteAggregator,
)
from securefl.errors import (
    AbortError,
    ConfigError,
    DataError,
    IntegrityError,
    ProtocolError,
    SecureFLError,
    WireError,
)
from securefl.he import _fixed_point
from securefl.he._codec import ChunkSum, decrypt_chunks, encrypt_chunks, load_chunks, num_chunks
from securefl.he._context import PublicContext, SecretContext
from securefl.he._pool import MIN_CHUNKS_PER_CORE, EncryptPool
from securefl.he._presets import HEPreset
from securefl.wire import PAYLOAD_LIMITS, SERVER, Envelope, Limits, pack, unpack

__all__ = [
    "STAGE_UPDATE",
    "HEServer",
    "HEServerMode",
    "HESite",
    "HESiteMode",
    "decrypt_aggregate",
    "decrypt_sum",
]

log = logging.getLogger(__name__)

STAGE_UPDATE = "he/update"
_UPDATE_FIELDS = {"v", "preset", "key_id", "weight", "dimension", "chunks"}
_SUM_FIELDS = {"v", "preset", "key_id", "weight_scale", "summands", "dimension", "chunks"}


def _chunk_limits(preset: HEPreset, dimension: int) -> Limits:
    """An update or an aggregate: a few short fields and one list of ciphertext chunks."""
    chunks = num_chunks(preset, dimension)
    return PAYLOAD_LIMITS.tightened(
        max_items=32 + chunks, max_depth=2, max_array_len=chunks, max_map_len=16, max_str_len=256
    )


def _check_round(ctx: RoundContext, max_sites: int) -> None:
    if len(ctx.cohort) > max_sites:
        raise ConfigError(
            f"a cohort of {len(ctx.cohort)} sites exceeds this HE preset's max_sites={max_sites}"
        )


class HESite(SiteAggregator):
    """A site's half: encrypt once, send once."""

    def __init__(self, mode: HESiteMode, ctx: RoundContext, site_id: str) -> None:
        if site_id not in ctx.cohort:
            raise ConfigError(f"site {site_id!r} is not in this round's cohort")
        _check_round(ctx, mode.context.preset.max_sites)
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
        limit = preset.max_abs_sum / len(self._ctx.cohort)
        peak = float(np.max(np.abs(scaled))) if scaled.size else 0.0
        if peak > limit:
            raise DataError(
                f"an update coordinate of {peak:.3g} exceeds {limit:.3g}: a sum over "
                f"{len(self._ctx.cohort)} sites could wrap in preset {preset.name}"
            )
        return scaled

    def submit(self, vector: npt.NDArray[np.float32], weight: float) -> list[Envelope]:
        """Encrypt ``(weight / max_weight)·vector`` and address it to the server."""
        if self._done:
            raise ProtocolError("this site already submitted its update for the round")
        if vector.ndim != 1 or vector.shape[0] != self._ctx.dimension:
            raise DataError(f"update must be a vector of {self._ctx.dimension} values")
        if not (0 < weight <= self._ctx.max_weight):
            raise DataError(f"weight {weight} must lie in (0, {self._ctx.max_weight}]")
        secret = self._mode.context
        chunks = encrypt_chunks(
            secret,
            self._encode(vector, weight),
            workers=self._mode.workers,
            pool=self._mode.pool(self._ctx.dimension),
        )
        payload = pack(
            {
                "v": 1,
                "preset": secret.preset.name,
                "key_id": secret.key_id,
                "weight": float(weight),
                "dimension": self._ctx.dimension,
                "chunks": chunks,
            }
        )
        self._done = True
        return [
            Envelope(
                federation=self._ctx.federation,
                round=self._ctx.round,
                stage=STAGE_UPDATE,
                sender=self._site_id,
                receiver=SERVER,
                payload=payload,
            )
        ]

    def handle(self, envelope: Envelope) -> list[Envelope]:
        """The server sends nothing to sites in this mode; anything arriving is an error."""
        raise ProtocolError(f"he mode expects no server message, got stage {envelope.stage!r}")


class HEServer(ServerAggregator):
    """The server's half: checks each update, adds it in place, counts survivors."""

    def __init__(self, public: PublicContext, ctx: RoundContext) -> None:
        _check_round(ctx, public.preset.max_sites)
        if ctx.min_sites < 2:
            raise ConfigError(
                "he mode needs min_sites >= 2: one update must never be decrypted alone"
            )
        self._public = public
        self._ctx = ctx
        self._sum = ChunkSum()
        self._weights: dict[str, float] = {}
        #: Sites left out of the sum, with the reason (WireError, IntegrityError, ProtocolError).
        self.rejected: dict[str, SecureFLError] = {}
        self._closed = False
        self._result: AggregateResult | None = None
        self._abort: AbortError | None = None
        self._departed: set[str] = set()

    @property
    def stage(self) -> str:
        """``he/update`` while collecting, then ``done`` or ``aborted``."""
        if self._abort is not None:
            return "aborted"
        return "done" if self._closed else STAGE_UPDATE

    def _parse(self, envelope: Envelope) -> tuple[float, list[Any]]:
        ctx = self._ctx
        if envelope.federation != ctx.federation or envelope.round != ctx.round:
            raise ProtocolError("envelope is for another federation or round")
        if envelope.stage != STAGE_UPDATE or envelope.receiver != SERVER:
            raise ProtocolError(f"unexpected stage {envelope.stage!r} or receiver")
        if envelope.sender in self._weights or envelope.sender in self.rejected:
            raise ProtocolError("this site already sent its update")
        obj = unpack(envelope.payload, limits=_chunk_limits(self._public.preset, ctx.dimension))
        if not isinstance(obj, dict) or set(obj) != _UPDATE_FIELDS or obj["v"] != 1:
            raise WireError("not an he/update payload")
        if obj["preset"] != self._public.preset.name or obj["dimension"] != ctx.dimension:
            raise WireError("update was made for another preset or dimension")
        if obj["key_id"] != self._public.key_id:
            raise IntegrityError("update was encrypted under another key")
        weight = obj["weight"]
        if not isinstance(weight, float) or not (0 < weight <= ctx.max_weight):
            raise WireError(f"weight must be a float in (0, {ctx.max_weight}]")
        return weight, load_chunks(self._public, obj["chunks"], ctx.dimension)

    def handle(self, envelope: Envelope) -> list[Envelope]:
        """Add one site's update; a bad one is recorded in :attr:`rejected` and left out."""
        sender = envelope.sender
        if self._closed:
            log.warning("he: late update from %r ignored", sender)
            return []
        if sender not in self._ctx.cohort:
            log.warning("he: update from %r, who is not in the cohort, ignored", sender)
            return []
        try:
            weight, vectors = self._parse(envelope)
        except (WireError, IntegrityError, ProtocolError) as exc:
            if sender not in self._weights:
                self.rejected.setdefault(sender, exc)
            log.warning("he: dropping site %r: %s", sender, exc)
        else:
            self._sum.add(vectors)
            self._weights[sender] = weight
        self._close_if_everyone_answered()
        return []

    def on_departure(self, site_id: str) -> list[Envelope]:
        """A site said it leaves: it is not waited for (nor summed, if it sent nothing)."""
        if not self._closed and site_id in self._ctx.cohort and site_id not in self._weights:
            self._departed.add(site_id)
            self._close_if_everyone_answered()
        return []

    def _close_if_everyone_answered(self) -> None:
        answered = set(self._weights) | set(self.rejected) | self._departed
        if not self._closed and answered >= set(self._ctx.cohort):
            self._close()

    def on_deadline(self) -> list[Envelope]:
        """Sites not heard from are dropped; the round closes with whoever was added."""
        if not self._closed:
            self._close()
        return []

    def _close(self) -> None:
        self._closed = True
        survivors = tuple(sorted(self._weights))
        if len(survivors) < self._ctx.min_sites:
            self._abort = AbortError(
                f"only {len(survivors)} of {len(self._ctx.cohort)} sites contributed; "
                f"he mode needs at least {self._ctx.min_sites} so no update is decrypted alone"
            )
            return
        blob = pack(
            {
                "v": 1,
                "preset": self._public.preset.name,
                "key_id": self._public.key_id,
                "weight_scale": float(self._ctx.max_weight),
                "summands": len(survivors),
                "dimension": self._ctx.dimension,
                "chunks": self._sum.serialize(),
            }
        )
        self._result = AggregateResult(
            total_weight=float(sum(self._weights[s] for s in survivors)),
            survivors=survivors,
            weighted_sum=None,
            encrypted_sum=blob,
        )

    @property
    def result(self) -> AggregateResult | None:
        """The encrypted aggregate once closed; raises AbortError if too few survived."""
        if self._abort is not None:
            raise self._abort
        return self._result


class HESiteMode(AggregationMode):
    """The ``he`` mode as a site configures it: holds the secret context."""

    name = "he"
    hides_updates = True

    def __init__(self, context: SecretContext, *, workers: int = 2, processes: bool = True) -> None:
        """``workers`` cores encrypt each update.

        With ``processes`` (the default) the extra cores are helper processes
        that each receive the serialized secret context through a pipe from
        this process, once, when the first large update is encrypted (or on
        :meth:`warm_up`); see :mod:`securefl.he._pool` for why that is
        acceptable on a site. ``processes=False`` keeps the key in this
        process and uses threads, which TenSEAL mostly serializes on the GIL.
        """
        if not isinstance(context, SecretContext):
            raise ConfigError("HESiteMode needs a SecretContext")
        if workers < 1:
            raise ConfigError("workers must be at least 1")
        self.context = context
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
        """The site half for ``site_id``."""
        return HESite(self, ctx, site_id)

    def server(self, ctx: RoundContext) -> NoReturn:
        """Refused: the server half must never hold the secret context."""
        raise ConfigError(
            "a site's HE mode holds the secret key; build the server half with "
            "HEServerMode(secret_context.public_context_bytes())"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("HESiteMode holds a secret key and cannot be pickled")


class HEServerMode(AggregationMode):
    """The ``he`` mode as the server configures it: public context only."""

    name = "he"
    hides_updates = True

    def __init__(self, public_context_bytes: bytes) -> None:
        """One process: deserialization holds the GIL, and a helper process
        measured slower (docs/he.md)."""
        self.context = PublicContext.from_bytes(public_context_bytes)

    def site(self, ctx: RoundContext, site_id: str) -> NoReturn:
        """Refused: a server-side mode cannot encrypt or decrypt."""
        raise ConfigError("the server's HE mode has no secret key; sites use HESiteMode")

    def server(self, ctx: RoundContext) -> HEServer:
        """The server half for this round."""
        return HEServer(self.context, ctx)


def decrypt_sum(
    secret_context: SecretContext, encrypted_sum: bytes, dimension: int
) -> npt.NDArray[np.float64]:
    """Decrypt an aggregate blob to Σ (w / max_weight)·Δ (float64, dequantized for BFV)."""
    obj = unpack(encrypted_sum, limits=_chunk_limits(secret_context.preset, dimension))
    if not isinstance(obj, dict) or set(obj) != _SUM_FIELDS or obj["v"] != 1:
        raise WireError("not an he aggregate")
    if obj["preset"] != secret_context.preset.name or obj["key_id"] != secret_context.key_id:
        raise IntegrityError("aggregate was made under another preset or key")
    if obj["dimension"] != dimension:
        raise WireError(f"aggregate has dimension {obj['dimension']}, expected {dimension}")
    if not isinstance(obj["weight_scale"], float) or not 0 < obj["weight_scale"] < float("inf"):
        raise WireError("aggregate weight scale must be a positive finite number")
    summands = obj["summands"]
    if not isinstance(summands, int) or summands < 2:
        raise AbortError("refusing to decrypt an aggregate of fewer than two updates")
    raw = decrypt_chunks(secret_context, obj["chunks"], dimension)[:dimension]
    preset = secret_context.preset
    if preset.scheme == "bfv":
        assert preset.plain_modulus is not None
        total = _fixed_point.dequantize_sum(
            raw,
            clip=secret_context.clip,
            levels=preset.quant_levels,
            summands=summands,
            modulus=preset.plain_modulus,
        )
    else:
        total = raw.astype(np.float64)
    return total * float(obj["weight_scale"])


def decrypt_aggregate(
    secret_context: SecretContext, encrypted_sum: bytes, total_weight: float, dimension: int
) -> npt.NDArray[np.float64]:
    """The weighted mean update Σ w·Δ / Σ w, decrypted at a site."""
    if not total_weight > 0:
        raise DataError("total weight must be positive")
    return decrypt_sum(secret_context, encrypted_sum, dimension) / total_weight
