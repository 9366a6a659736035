"""The ``he`` mode's two byte formats: a site's signed update and the server's aggregate.

Why the aggregate carries the sites' signed headers: sites decrypt what the
server hands them, and every number the server adds beside the ciphertext
(how many were summed, their total weight, the weight scale) would otherwise
be the server's word. With the headers, each site rechecks that at least two
distinct roster sites signed an update for this round, under this key, with
these weights and this ``max_weight``; only the ciphertext sum itself stays
unverifiable, which is why :mod:`securefl.he._decrypt` also bounds it.
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
_VERSION = 2
_UPDATE_FIELDS = {"v", "preset", "key_id", "weight", "dimension", "chunks", "signature"}
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


#: The most upload headers an aggregate may carry (the runtime's cohort cap).
_MAX_UPLOADS = 4096


def chunk_limits(chunks: int, *, uploads: int = 0) -> Limits:
    """An update or aggregate: a few short fields, ``chunks`` ciphertexts, ``uploads`` headers.

    Sized to the round so a hostile payload of many tiny values is refused
    before msgpack builds it (see :mod:`securefl.wire`).
    """
    return PAYLOAD_LIMITS.tightened(
        max_items=32 + chunks + 6 * uploads,
        max_depth=3 if uploads else 2,
        max_array_len=max(chunks, uploads),
        max_map_len=16,
        max_str_len=256,
    )


def _positive_float(value: Any) -> bool:
    return isinstance(value, float) and 0 < value < math.inf


@dataclass(frozen=True)
class UploadHeader:
    """What one site signed for its update: who, with which weight, over which bytes."""

    site: str
    weight: float
    digest: bytes
    signature: bytes

    def to_wire(self) -> list[Any]:
        return [self.site, self.weight, self.digest, self.signature]

    @classmethod
    def from_wire(cls, obj: Any) -> UploadHeader:
        if not isinstance(obj, list) or len(obj) != 4:
            raise WireError("malformed upload header in an he aggregate")
        site, weight, digest, signature = obj
        if not isinstance(site, str) or not _positive_float(weight):
            raise WireError("malformed upload header in an he aggregate")
        if not isinstance(digest, bytes) or not isinstance(signature, bytes):
            raise WireError("malformed upload header in an he aggregate")
        return cls(site, weight, digest, signature)

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
            digest=self.digest,
        )
        verify(roster_key(roster, self.site), message, self.signature)


def encode_update(
    *,
    preset: str,
    key_id: bytes,
    weight: float,
    dimension: int,
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
) -> tuple[float, list[bytes], bytes]:
    """``(weight, chunks, signature)`` of an ``he/update`` payload, fields checked."""
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
    return weight, chunks, signature


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


def parse_aggregate(blob: bytes, *, chunks: int) -> dict[str, Any]:
    """The fields of an aggregate, types checked; ``uploads`` as :class:`UploadHeader`."""
    obj = unpack(blob, limits=chunk_limits(chunks, uploads=_MAX_UPLOADS))
    if not isinstance(obj, dict) or set(obj) != _SUM_FIELDS or obj["v"] != _VERSION:
        raise WireError("not an he aggregate")
    if not isinstance(obj["round"], int) or isinstance(obj["round"], bool) or obj["round"] < 0:
        raise WireError("he aggregate: round must be a non-negative int")
    if not _positive_float(obj["weight_scale"]):
        raise WireError("he aggregate: weight_scale must be a positive float")
    if not isinstance(obj["uploads"], list):
        raise WireError("he aggregate: uploads must be a list")
    obj["uploads"] = [UploadHeader.from_wire(u) for u in obj["uploads"]]
    return obj
