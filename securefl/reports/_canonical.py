"""Canonical bytes, hashes and signatures of privacy records.

Why one canonical form: a record is signed and hash-chained, so every party
(the site writing it, an auditor in another language) must turn the same
record into the same bytes. The form is JSON with keys sorted, no whitespace,
ASCII only (non-ASCII escaped as ``\\uXXXX``), integers as integers and floats
as Python's ``repr`` (the shortest text that round-trips the IEEE double, e.g.
``1.0``, ``1e-05``); NaN and infinities are refused. docs/records.md spells it
out for re-implementation.
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
    "canonical_bytes",
    "record_hash",
    "sign_record",
    "signing_payload",
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
