"""The ``he`` mode's two byte formats: a site's signed update and the server's aggregate.

The aggregate carries the server's encrypted sum and, beside it, the signed
header of every upload that went into it (site, weight, round start, chunk
digest, signature) but never another site's ciphertexts: all sites share
the secret key, so a site handed another's ciphertext could decrypt it.
The headers let each site recheck who was summed, with which weights, for
which round start, and that its own upload (the very bytes it sent) is
among them. What they cannot show is that the sum is exactly those uploads
added: that is the server's word (``threat_models/he.md`` says why this is
no weaker than he mode's trust assumption), bounded by the feasibility
check of :mod:`securefl.he._decrypt`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from securefl.errors import IntegrityError, WireError
from securefl.hazmat.sign import verify
from securefl.he._trust import roster_key, update_message
from securefl.wire import PAYLOAD_LIMITS, Limits, pack, unpack

__all__ = [
    "STAGE_UPDATE",
    "UploadHeader",
    "encode_aggregate",
    "encode_update",
    "parse_aggregate",
    "parse_update",
]

STAGE_UPDATE = "he/update"
_VERSION = 3
_UPDATE_FIELDS = {
    "v",
    "preset",
    "key_id",
    "weight",
    "dimension",
    "round_digest",
    "chunks",
    "signature",
}
_SUM_FIELDS = {
    "v",
    "preset",
    "key_id",
    "round",
    "weight_scale",
    "dimension",
    "uploads",
    "chunks",
}
_HEADER_ITEMS = 5  # site, weight, round_digest, digest, signature


def chunk_limits(chunks: int, *, uploads: int = 0) -> Limits:
    """An update (``uploads=0``) or an aggregate: ``chunks`` ciphertexts and ``uploads`` headers.

    Sized to the round so a hostile payload of many tiny values is refused
    before msgpack builds it (see :mod:`securefl.wire`).
    """
    return PAYLOAD_LIMITS.tightened(
        max_items=32 + chunks + (_HEADER_ITEMS + 1) * uploads,
        max_depth=3 if uploads else 2,
        max_array_len=max(chunks, uploads, _HEADER_ITEMS),
        max_map_len=16,
        max_str_len=256,
    )


def _positive_float(value: Any) -> bool:
    return isinstance(value, float) and 0 < value < math.inf


@dataclass(frozen=True)
class UploadHeader:
    """What one site signed for its upload: who, weight, round start, and its chunks' digest.

    The aggregate carries it without the ciphertexts it covers. ``digest``
    is signed, so a header cannot be altered or made up; a site recognises
    its own upload by the digest of the chunks it actually sent.
    """

    site: str
    weight: float
    round_digest: bytes
    digest: bytes
    signature: bytes

    def to_wire(self) -> list[Any]:
        return [self.site, self.weight, self.round_digest, self.digest, self.signature]

    @classmethod
    def from_wire(cls, obj: Any) -> UploadHeader:
        if not isinstance(obj, list) or len(obj) != _HEADER_ITEMS:
            raise WireError("malformed upload header in an he aggregate")
        site, weight, round_digest, digest, signature = obj
        if not isinstance(site, str) or not _positive_float(weight):
            raise WireError("malformed upload header in an he aggregate")
        if not isinstance(round_digest, bytes) or len(round_digest) not in (0, 32):
            raise WireError("malformed upload header in an he aggregate")
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise WireError("malformed upload header in an he aggregate")
        if not isinstance(signature, bytes):
            raise WireError("malformed upload header in an he aggregate")
        return cls(site, weight, round_digest, digest, signature)

    def verify(
        self,
        *,
        roster: Mapping[str, bytes],
        federation: str,
        round_id: int,
        key_id: bytes,
        preset: str,
        dimension: int,
        max_weight: float,
    ) -> None:
        """Raise :class:`IntegrityError` unless this site signed exactly this upload."""
        message = update_message(
            federation=federation,
            round_id=round_id,
            site=self.site,
            key_id=key_id,
            preset=preset,
            dimension=dimension,
            weight=self.weight,
            max_weight=max_weight,
            round_digest=self.round_digest,
            digest=self.digest,
        )
        verify(roster_key(roster, self.site), message, self.signature)


def encode_update(
    *,
    preset: str,
    key_id: bytes,
    weight: float,
    dimension: int,
    round_digest: bytes,
    chunks: list[bytes],
    signature: bytes,
) -> bytes:
    return pack(
        {
            "v": _VERSION,
            "preset": preset,
            "key_id": key_id,
            "weight": float(weight),
            "dimension": dimension,
            "round_digest": round_digest,
            "chunks": chunks,
            "signature": signature,
        }
    )


def parse_update(
    payload: bytes,
    *,
    preset: str,
    key_id: bytes,
    dimension: int,
    max_weight: float,
    chunks: int,
) -> tuple[float, bytes, list[bytes], bytes]:
    """``(weight, round_digest, chunks, signature)`` of an ``he/update`` payload, fields checked."""
    obj = unpack(payload, limits=chunk_limits(chunks))
    if not isinstance(obj, dict) or set(obj) != _UPDATE_FIELDS or obj["v"] != _VERSION:
        raise WireError("not an he/update payload")
    if obj["preset"] != preset or obj["dimension"] != dimension:
        raise WireError("update was made for another preset or dimension")
    if obj["key_id"] != key_id:
        raise IntegrityError("update was labelled with another key")
    weight = obj["weight"]
    if not _positive_float(weight) or weight > max_weight:
        raise WireError(f"weight must be a float in (0, {max_weight}]")
    chunks, signature = obj["chunks"], obj["signature"]
    if not isinstance(chunks, list) or not all(isinstance(c, bytes) for c in chunks):
        raise WireError("encrypted update: chunks must be a list of byte strings")
    if not isinstance(signature, bytes):
        raise WireError("encrypted update: signature must be bytes")
    round_digest = obj["round_digest"]
    if not isinstance(round_digest, bytes) or len(round_digest) not in (0, 32):
        raise WireError("encrypted update: round_digest must be a SHA-256 (or empty)")
    return weight, round_digest, chunks, signature


def encode_aggregate(
    *,
    preset: str,
    key_id: bytes,
    round_id: int,
    weight_scale: float,
    dimension: int,
    uploads: list[UploadHeader],
    chunks: list[bytes],
) -> bytes:
    return pack(
        {
            "v": _VERSION,
            "preset": preset,
            "key_id": key_id,
            "round": round_id,
            "weight_scale": float(weight_scale),
            "dimension": dimension,
            "uploads": [u.to_wire() for u in uploads],
            "chunks": chunks,
        }
    )


def parse_aggregate(blob: bytes, *, chunks: int, max_uploads: int) -> dict[str, Any]:
    """The fields of an aggregate, types checked; ``uploads`` as :class:`UploadHeader`.

    ``max_uploads`` bounds the headers (the preset's ``max_sites``).
    """
    obj = unpack(blob, limits=chunk_limits(chunks, uploads=max_uploads))
    if not isinstance(obj, dict) or set(obj) != _SUM_FIELDS or obj["v"] != _VERSION:
        raise WireError("not an he aggregate")
    if not isinstance(obj["round"], int) or isinstance(obj["round"], bool) or obj["round"] < 0:
        raise WireError("he aggregate: round must be a non-negative int")
    if not _positive_float(obj["weight_scale"]):
        raise WireError("he aggregate: weight_scale must be a positive float")
    if not isinstance(obj["uploads"], list):
        raise WireError("he aggregate: uploads must be a list")
    if len(obj["uploads"]) > max_uploads:
        raise WireError(f"he aggregate: more than {max_uploads} upload headers")
    chunks = obj["chunks"]
    if not isinstance(chunks, list) or not all(isinstance(c, bytes) for c in chunks):
        raise WireError("he aggregate: chunks must be a list of byte strings")
    obj["uploads"] = [UploadHeader.from_wire(u) for u in obj["uploads"]]
    return obj
