"""Canonical bytes, hashes and signatures of privacy records.

Why one canonical form: a record is signed and hash-chained, so every party
(the site writing it, an auditor in another language) must turn the same
record into the same bytes. The form is JSON with keys sorted, no whitespace,
ASCII only (non-ASCII escaped as ``\\uXXXX``), integers as integers and floats
as Python's ``repr`` (the shortest text that round-trips the IEEE double, e.g.
``1.0``, ``1e-05``); NaN and infinities are refused. docs/records.md spells it
out for re-implementation.

Reading is as strict as writing: :func:`strict_loads` refuses an object with
a repeated key (``json.loads`` would silently keep the last value, so two
readers could disagree on what a signed line says), and an auditor compares
each stored line byte for byte with the canonical encoding of what it parsed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

__all__ = [
    "GENESIS_HASH",
    "SIGNATURE_DOMAIN",
    "DuplicateKeyError",
    "canonical_bytes",
    "record_hash",
    "sign_record",
    "signing_payload",
    "strict_loads",
    "verify_signature",
]

#: prev_hash of the first record of a chain.
GENESIS_HASH = "0" * 64

#: Prefix of every signed message, so a record signature can never be
#: replayed as a signature over any other securefl message (or vice versa).
SIGNATURE_DOMAIN = b"securefl/privacy-record/v1\x00"


def canonical_bytes(obj: dict[str, Any]) -> bytes:
    """The canonical JSON encoding of ``obj`` (see the module docstring)."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(key)
        out[key] = value
    return out


class DuplicateKeyError(ValueError):
    """A JSON object names one key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key


def strict_loads(line: bytes) -> Any:
    """Decode one JSON line, refusing repeated keys and NaN/Infinity.

    Raises :class:`DuplicateKeyError` for a repeated key and
    :class:`ValueError` (``json.JSONDecodeError`` or a decode error) for
    anything that is not strict JSON text.
    """

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(
        line.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=no_constants
    )


def signing_payload(record: dict[str, Any]) -> bytes:
    """Domain tag + canonical JSON of every field except ``signature``."""
    body = {k: v for k, v in record.items() if k != "signature"}
    return SIGNATURE_DOMAIN + canonical_bytes(body)


def record_hash(record: dict[str, Any]) -> str:
    """Hex SHA-256 of the canonical bytes of the whole record, signature included.

    The next record's ``prev_hash`` is this value, so the chain commits to the
    signed record, not just to its claims.
    """
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


def sign_record(record: dict[str, Any], key: Ed25519PrivateKey) -> str:
    """Hex Ed25519 signature over :func:`signing_payload`."""
    return key.sign(signing_payload(record)).hex()


def verify_signature(record: dict[str, Any], public_key: bytes) -> bool:
    """True when ``record["signature"]`` verifies under the raw 32-byte key."""
    sig = record.get("signature")
    if not isinstance(sig, str):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            bytes.fromhex(sig), signing_payload(record)
        )
    except (InvalidSignature, ValueError):
        return False
    return True
