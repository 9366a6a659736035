"""Signed envelopes: every envelope on the network carries its sender's signature.

On the network an envelope's ``sender`` field is a claim, not an identity.
:func:`seal` wraps :meth:`Envelope.to_bytes` in a frame with a random
16-byte envelope id and an Ed25519 signature by the sender's roster identity
key over (federation, round, stage, sender, receiver, id, SHA-256 of the
payload); :func:`open_sealed` refuses the frame unless that signature
verifies under the key the pinned roster gives for the claimed sender. The
id makes retries idempotent: the same id with the same bytes is a retry, the
same id with other bytes is a replay (the server's ``/v1/send`` decides).

The frame is a msgpack map ``{"v": 1, "id": bin16, "env": bin, "sig": bin64}``
in exactly that order, walked by :func:`securefl.wire.scan` under strict
limits before anything is built; the inner envelope is decoded by
:meth:`Envelope.from_bytes` with a ``check`` the caller may use to refuse the
header (foreign federation, wrong sender) before the payload is copied.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import msgpack

from securefl.errors import IntegrityError, WireError
from securefl.hazmat.sign import SIGNATURE_LEN, SigningKey, signed_message, verify
from securefl.wire import (
    MAX_ENVELOPE_BYTES,
    Envelope,
    EnvelopeHeader,
    Limits,
    bin_header,
    scan,
    unpack,
)

__all__ = [
    "ENVELOPE_DOMAIN",
    "FRAME_OVERHEAD",
    "ID_LEN",
    "Frame",
    "SealedEnvelope",
    "envelope_message",
    "open_frame",
    "open_sealed",
    "read_frame",
    "retry_digest",
    "seal",
    "seal_parts",
]

ENVELOPE_DOMAIN = "securefl/envelope/v1"
FRAME_VERSION = 1
ID_LEN = 16
#: Bytes a frame adds to the envelope it wraps (map header, keys, id, signature, bin headers).
FRAME_OVERHEAD = 128
_FRAME_FIELDS = ("v", "id", "env", "sig")
_SMALL = Limits(
    max_items=1,
    max_depth=0,
    max_array_len=0,
    max_map_len=0,
    max_str_len=8,
    max_bin_len=SIGNATURE_LEN,
)


def _frame_limits(max_bytes: int) -> Limits:
    return Limits(
        max_bytes=max_bytes,
        max_items=1 + 2 * len(_FRAME_FIELDS),
        max_depth=1,
        max_array_len=0,
        max_map_len=len(_FRAME_FIELDS),
        max_str_len=8,
        max_bin_len=max_bytes,
    )


@dataclass(frozen=True, slots=True)
class SealedEnvelope:
    """An envelope whose signature verified, its id, and the exact frame bytes."""

    envelope: Envelope
    id: bytes
    digest: bytes
    """SHA-256 of the whole frame: what "the same bytes" means for a retry."""


def envelope_message(
    envelope: Envelope, envelope_id: bytes, payload_hash: bytes | None = None
) -> bytes:
    """The bytes an envelope's signature covers (domain-separated, length-prefixed).

    They hold the payload only through its SHA-256: a caller that already
    has it (the server sealing one model for every site) passes
    ``payload_hash`` and the payload is not hashed again.
    """
    if payload_hash is None:
        payload_hash = hashlib.sha256(envelope.payload).digest()
    return _message(envelope.header, envelope_id, payload_hash)


def _message(header: EnvelopeHeader, envelope_id: bytes, payload_hash: bytes) -> bytes:
    return signed_message(
        ENVELOPE_DOMAIN,
        header.federation,
        header.round,
        header.stage,
        header.sender,
        header.receiver,
        envelope_id,
        payload_hash,
    )


def seal(envelope: Envelope, signing_key: SigningKey, *, envelope_id: bytes | None = None) -> bytes:
    """The signed frame for ``envelope``; a fresh random id unless ``envelope_id`` is given.

    Re-sending a frame (a retry) must reuse its bytes, not re-seal: a new id
    would count as a new message.
    """
    return b"".join(seal_parts(envelope, signing_key, envelope_id=envelope_id))


def seal_parts(
    envelope: Envelope,
    signing_key: SigningKey,
    *,
    envelope_id: bytes | None = None,
    payload_hash: bytes | None = None,
) -> tuple[bytes, bytes, bytes]:
    """:func:`seal`'s frame as three parts, the middle one the payload object itself.

    Their concatenation is the frame; a sender that writes them one after
    the other (the server's ``/v1/receive``) never copies the payload, and
    one model sealed for ten sites is one payload in memory, not ten.
    ``payload_hash`` is the payload's SHA-256 if the caller has it already.
    """
    eid = os.urandom(ID_LEN) if envelope_id is None else envelope_id
    if not isinstance(eid, bytes) or len(eid) != ID_LEN:
        raise WireError(f"an envelope id is {ID_LEN} bytes")
    sig = signing_key.sign(envelope_message(envelope, eid, payload_hash))
    head = envelope.head()
    packer = msgpack.Packer(use_bin_type=True)
    prefix = b"".join(
        [
            packer.pack_map_header(len(_FRAME_FIELDS)),
            packer.pack("v"),
            packer.pack(FRAME_VERSION),
            packer.pack("id"),
            packer.pack(eid),
            packer.pack("env"),
            bin_header(len(head) + len(envelope.payload)),
        ]
    )
    # joined, the same bytes as pack({"v", "id", "env": envelope.to_bytes(), "sig"})
    # (a known-answer vector checks them against that encoding)
    return prefix + head, envelope.payload, packer.pack("sig") + packer.pack(sig)


@dataclass(frozen=True, slots=True)
class Frame:
    """A sealed envelope split but not yet verified (see :func:`read_frame`)."""

    id: bytes
    signature: bytes
    envelope_bytes: bytes | memoryview
    """The inner envelope: a view into the frame's bytes, not a copy."""
    digest: bytes
    envelope_at: int = 0
    """Where :attr:`envelope_bytes` starts in the frame (for :func:`retry_digest`)."""


def read_frame(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = MAX_ENVELOPE_BYTES + FRAME_OVERHEAD,
    digest: bool = True,
) -> Frame:
    """Split a frame strictly (limits, field order, sizes) without verifying it.

    Nothing large is copied: the inner envelope is a view into ``data``,
    whose payload :func:`open_frame` copies out once (so at most two copies
    of a large update are alive at any time). ``digest=True`` also hashes
    the whole frame (:attr:`Frame.digest`); the server instead takes
    :func:`retry_digest`, which reuses the payload hash the signature needs.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError("expected bytes")
    if len(data) > max_bytes:
        raise WireError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    view = memoryview(data)
    starts = scan(cast(bytes, data), _frame_limits(max_bytes))  # scan only indexes and slices
    if data[:1] != bytes([0x80 | len(_FRAME_FIELDS)]):
        raise WireError("not a sealed envelope: expected a map of its four fields")
    bounds = [*starts, len(data)]
    spans: dict[str, tuple[int, int]] = {}
    for i, name in enumerate(_FRAME_FIELDS):
        key_at, value_at, value_end = bounds[2 * i], bounds[2 * i + 1], bounds[2 * i + 2]
        if value_at - key_at > 9 or unpack(bytes(view[key_at:value_at]), limits=_SMALL) != name:
            raise WireError("not a sealed envelope: unexpected, missing or reordered fields")
        spans[name] = (value_at, value_end)
    small = {
        n: unpack(bytes(view[a:b]), limits=_SMALL) for n, (a, b) in spans.items() if n != "env"
    }
    if type(small["v"]) is not int or small["v"] != FRAME_VERSION:
        raise WireError(f"unsupported sealed envelope version {small['v']!r}")
    eid, sig = small["id"], small["sig"]
    if not isinstance(eid, bytes) or len(eid) != ID_LEN:
        raise WireError(f"a sealed envelope id is {ID_LEN} bytes")
    if not isinstance(sig, bytes) or len(sig) != SIGNATURE_LEN:
        raise WireError(f"a sealed envelope signature is {SIGNATURE_LEN} bytes")
    env_at, env_end = spans["env"]
    width = {0xC4: 1, 0xC5: 2, 0xC6: 4}.get(data[env_at])
    if width is None:
        raise WireError("sealed envelope body must be bytes")
    body = view[env_at + 1 + width : env_end]
    whole = hashlib.sha256(view).digest() if digest else b""
    return Frame(
        id=eid, signature=sig, envelope_bytes=body, digest=whole, envelope_at=env_at + 1 + width
    )


def retry_digest(
    frame: bytes | bytearray | memoryview, payload_at: int, payload_end: int, payload_hash: bytes
) -> bytes:
    """What "the same frame bytes" means for a retry, from the payload's SHA-256.

    SHA-256 over where the payload lies in the frame, the frame's bytes
    before it, the payload's SHA-256 and the frame's bytes after it. Equal
    digests mean equal frames, as with a hash of the whole frame, but the
    large payload is hashed once, for this and for the signature alike.
    """
    view = memoryview(frame)
    h = hashlib.sha256(payload_at.to_bytes(8, "big") + payload_end.to_bytes(8, "big"))
    h.update(view[:payload_at])
    h.update(payload_hash)
    h.update(view[payload_end:])
    return h.digest()


def open_frame(
    frame: Frame,
    *,
    keys: Mapping[str, bytes],
    check: Callable[[EnvelopeHeader], None] | None = None,
    payload_hash: Callable[[], bytes] | None = None,
) -> SealedEnvelope:
    """Decode the inner envelope and verify the frame's signature under ``keys[sender]``.

    An unknown sender or a signature that does not verify is an
    :class:`IntegrityError` (opaque); ``check`` sees the header before the
    payload is copied and may refuse it by raising. ``payload_hash``, if
    given, returns the payload's SHA-256 the caller computed (after
    ``check``); it is what the signature is checked over.
    """
    envelope = Envelope.from_bytes(
        frame.envelope_bytes, max_bytes=len(frame.envelope_bytes), check=check
    )
    key = keys.get(envelope.sender)
    if key is None:
        raise IntegrityError("signature did not verify")
    known = payload_hash() if payload_hash is not None else None
    verify(key, envelope_message(envelope, frame.id, known), frame.signature)
    return SealedEnvelope(envelope=envelope, id=frame.id, digest=frame.digest)


def open_sealed(
    data: bytes | bytearray | memoryview,
    *,
    keys: Mapping[str, bytes],
    max_bytes: int = MAX_ENVELOPE_BYTES + FRAME_OVERHEAD,
    check: Callable[[EnvelopeHeader], None] | None = None,
    digest: bool = True,
) -> SealedEnvelope:
    """Decode a frame strictly and verify its signature under ``keys[sender]``.

    Malformed bytes are a :class:`WireError`; an unknown sender or a
    signature that does not verify is an :class:`IntegrityError` (opaque).
    ``digest=False`` skips the whole-frame hash (see :func:`read_frame`).
    """
    frame = read_frame(data, max_bytes=max_bytes, digest=digest)
    return open_frame(frame, keys=keys, check=check)
