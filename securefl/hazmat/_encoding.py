"""Length-prefixed, typed encoding of byte strings for KDF info, AEAD data and signatures.

.. warning::

   This is hazmat: an easy-to-misuse primitive. Protocol code should use the
   safe APIs in :mod:`securefl.secagg` and :mod:`securefl.reports`.

Why this exists: concatenating fields (``b"round" + b"12" + b"alice"``) is
ambiguous: ``("ab", "c")`` and ``("a", "bc")`` give the same bytes, so a key,
tag or signature made for one tuple of fields would also be valid for another.
Every field here carries a one-byte type tag and a 4-byte big-endian length,
and the whole string opens with a context constant and the number of fields.
Two different tuples (or the same tuple under two contexts) therefore never
encode to the same bytes, and the encoding can be parsed back without guessing.

Layout::

    context (fixed per use, e.g. b"securefl/kdf/v1") || 0x00
    || u32 number of fields
    || for each field: tag (0x01 bytes, 0x02 UTF-8 str, 0x03 u64 int) || u32 length || content
"""

from __future__ import annotations

import struct

from securefl.errors import ConfigError

__all__ = ["Field", "encode_fields"]

Field = bytes | str | int

_TAG_BYTES = b"\x01"
_TAG_STR = b"\x02"
_TAG_INT = b"\x03"
_MAX_FIELD = 0xFFFF_FFFF


def _encode_one(value: Field) -> bytes:
    """Encode one field with its type tag and length prefix."""
    if isinstance(value, bool):
        # bool is an int subclass; True and 1 must not be silently interchangeable.
        raise ConfigError("encoded fields may be bytes, str or int, not bool")
    if isinstance(value, bytes):
        tag, body = _TAG_BYTES, value
    elif isinstance(value, str):
        try:
            body = value.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError("a str field is not encodable as UTF-8") from None
        tag = _TAG_STR
    elif isinstance(value, int):
        if not 0 <= value < 1 << 64:
            raise ConfigError("int fields must be in [0, 2**64)")
        tag, body = _TAG_INT, value.to_bytes(8, "big")
    else:
        raise ConfigError(f"encoded fields may be bytes, str or int, not {type(value).__name__}")
    if len(body) > _MAX_FIELD:
        raise ConfigError("an encoded field is longer than 2**32 - 1 bytes")
    return tag + struct.pack(">I", len(body)) + body


def encode_fields(context: bytes, *fields: Field) -> bytes:
    """Encode ``fields`` unambiguously under a fixed ``context`` constant.

    ``context`` is a module constant naming the use (KDF info, share AD,
    signed message) and its version; it must not contain a NUL byte because
    NUL terminates it.
    """
    if not context or b"\x00" in context:
        raise ConfigError("context must be non-empty and contain no NUL byte")
    parts = [context, b"\x00", struct.pack(">I", len(fields))]
    parts.extend(_encode_one(f) for f in fields)
    return b"".join(parts)
