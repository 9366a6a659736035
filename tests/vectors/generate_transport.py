"""Write tests/vectors/transport_envelope.json: a sealed envelope and frames that must fail.

Run from the repository root: ``python tests/vectors/generate_transport.py``.
Deterministic (the RFC 8032 TEST 1 key, a fixed id and payload; Ed25519 is
deterministic), so re-running it must leave ``git diff`` empty.

The known answer is computed twice: through ``securefl.transport.signed.seal``
and by an independent route written out here (the msgpack frame and envelope
with ``struct``, the signed string with the ``struct``-based length-prefixed
encoder, the signature with pyca/cryptography directly). Every must-fail
frame is checked to fail with the error class it records.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from securefl.errors import IntegrityError, WireError
from securefl.hazmat.sign import SigningKey
from securefl.transport.signed import open_sealed, seal
from securefl.wire import Envelope

OUT = Path(__file__).resolve().parent / "transport_envelope.json"
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
OTHER_SEED = hashlib.sha256(b"securefl/vectors/transport/other-key").digest()
ENVELOPE_ID = hashlib.sha256(b"securefl/vectors/transport/id").digest()[:16]
PAYLOAD = hashlib.sha256(b"securefl/vectors/transport/payload").digest() * 3
FIELDS = {
    "federation": "hospitals-2026",
    "round": 3,
    "stage": "mask/masked-input",
    "sender": "site-a",
    "receiver": "server",
}


# ------------------------------------------------------------ independent route


def mp_str(s: str) -> bytes:
    b = s.encode()
    assert len(b) < 32
    return bytes([0xA0 | len(b)]) + b


def mp_bin(b: bytes) -> bytes:
    if len(b) < 256:
        return b"\xc4" + bytes([len(b)]) + b
    if len(b) < 65536:
        return b"\xc5" + struct.pack(">H", len(b)) + b
    return b"\xc6" + struct.pack(">I", len(b)) + b


def mp_uint(n: int) -> bytes:
    assert 0 <= n < 128
    return bytes([n])


def envelope_ref(f: dict[str, Any], payload: bytes) -> bytes:
    out = bytes([0x87]) + mp_str("v") + mp_uint(1)
    for name in ("federation", "round", "stage", "sender", "receiver"):
        value = f[name]
        out += mp_str(name) + (mp_uint(value) if isinstance(value, int) else mp_str(value))
    return out + mp_str("payload") + mp_bin(payload)


def frame_ref(env: bytes, eid: bytes, sig: bytes, *, version: int = 1) -> bytes:
    return (
        bytes([0x84])
        + mp_str("v")
        + mp_uint(version)
        + mp_str("id")
        + mp_bin(eid)
        + mp_str("env")
        + mp_bin(env)
        + mp_str("sig")
        + mp_bin(sig)
    )


def field_ref(value: Any) -> bytes:
    if isinstance(value, bytes):
        return b"\x01" + struct.pack(">I", len(value)) + value
    if isinstance(value, str):
        b = value.encode()
        return b"\x02" + struct.pack(">I", len(b)) + b
    return b"\x03" + struct.pack(">I", 8) + value.to_bytes(8, "big")


def signed_ref(f: dict[str, Any], eid: bytes, payload: bytes) -> bytes:
    values = [f["federation"], f["round"], f["stage"], f["sender"], f["receiver"], eid]
    values.append(hashlib.sha256(payload).digest())
    out = b"securefl/signed/v1\x00" + struct.pack(">I", 1 + len(values))
    out += field_ref("securefl/envelope/v1")
    return out + b"".join(field_ref(v) for v in values)


def sign_ref(seed: bytes, message: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


# ------------------------------------------------------------ vectors


def main() -> None:
    key = SigningKey.from_private_bytes(SEED)
    env = Envelope(**FIELDS, payload=PAYLOAD)
    sealed = seal(env, key, envelope_id=ENVELOPE_ID)
    message = signed_ref(FIELDS, ENVELOPE_ID, PAYLOAD)
    signature = sign_ref(SEED, message)
    assert sealed == frame_ref(envelope_ref(FIELDS, PAYLOAD), ENVELOPE_ID, signature)
    public = key.public_bytes()
    keys = {"site-a": public}
    assert open_sealed(sealed, keys=keys).envelope == env

    good_env = envelope_ref(FIELDS, PAYLOAD)
    flipped = bytearray(signature)
    flipped[0] ^= 1
    must_fail: dict[str, tuple[bytes, str, dict[str, bytes] | None]] = {
        "signature bit flipped": (
            frame_ref(good_env, ENVELOPE_ID, bytes(flipped)),
            "IntegrityError",
            None,
        ),
        "payload changed": (
            frame_ref(envelope_ref(FIELDS, PAYLOAD[:-1] + b"\x00"), ENVELOPE_ID, signature),
            "IntegrityError",
            None,
        ),
        "round changed": (
            frame_ref(envelope_ref({**FIELDS, "round": 4}, PAYLOAD), ENVELOPE_ID, signature),
            "IntegrityError",
            None,
        ),
        "stage changed": (
            frame_ref(
                envelope_ref({**FIELDS, "stage": "mask/unmask"}, PAYLOAD), ENVELOPE_ID, signature
            ),
            "IntegrityError",
            None,
        ),
        "rerouted": (
            frame_ref(
                envelope_ref({**FIELDS, "receiver": "site-b"}, PAYLOAD), ENVELOPE_ID, signature
            ),
            "IntegrityError",
            None,
        ),
        "sender renamed": (
            frame_ref(
                envelope_ref({**FIELDS, "sender": "site-b"}, PAYLOAD), ENVELOPE_ID, signature
            ),
            "IntegrityError",
            {"site-a": public, "site-b": public},
        ),
        "other federation": (
            frame_ref(
                envelope_ref({**FIELDS, "federation": "other"}, PAYLOAD), ENVELOPE_ID, signature
            ),
            "IntegrityError",
            None,
        ),
        "id changed": (frame_ref(good_env, bytes(16), signature), "IntegrityError", None),
        "signed by another key": (
            frame_ref(good_env, ENVELOPE_ID, sign_ref(OTHER_SEED, message)),
            "IntegrityError",
            None,
        ),
        "sender not on the roster": (sealed, "IntegrityError", {"site-b": public}),
        "short id": (frame_ref(good_env, ENVELOPE_ID[:15], signature), "WireError", None),
        "short signature": (frame_ref(good_env, ENVELOPE_ID, signature[:63]), "WireError", None),
        "frame version 2": (
            frame_ref(good_env, ENVELOPE_ID, signature, version=2),
            "WireError",
            None,
        ),
        "trailing byte": (sealed + b"\x00", "WireError", None),
        "truncated": (sealed[:-1], "WireError", None),
        "fields reordered": (
            bytes([0x84])
            + mp_str("id")
            + mp_bin(ENVELOPE_ID)
            + mp_str("v")
            + mp_uint(1)
            + mp_str("env")
            + mp_bin(good_env)
            + mp_str("sig")
            + mp_bin(signature),
            "WireError",
            None,
        ),
        "extra field": (
            b"\x85" + sealed[1:] + mp_str("x") + mp_uint(0),
            "WireError",
            None,
        ),
        "envelope as str": (
            sealed.replace(mp_bin(good_env), b"\xda" + struct.pack(">H", len(good_env)) + good_env),
            "WireError",
            None,
        ),
        "extension type": (b"\x84\xa1v\xd4\x00\x00", "WireError", None),
        "empty": (b"", "WireError", None),
    }
    errors = {"WireError": WireError, "IntegrityError": IntegrityError}
    cases = []
    for name, (frame, error, roster) in must_fail.items():
        try:
            open_sealed(frame, keys=roster or keys)
        except errors[error]:
            pass
        else:  # pragma: no cover - the generator refuses to write a vector that does not fail
            raise AssertionError(f"must-fail vector {name!r} did not fail with {error}")
        case: dict[str, Any] = {"name": name, "frame": frame.hex(), "error": error}
        if roster is not None:
            case["keys"] = {k: v.hex() for k, v in roster.items()}
        cases.append(case)

    doc = {
        "about": "securefl/transport/signed.py frames; see tests/vectors/README.md",
        "seed": SEED.hex(),
        "public_key": public.hex(),
        "envelope": {**FIELDS, "payload": PAYLOAD.hex()},
        "envelope_id": ENVELOPE_ID.hex(),
        "signed_message": message.hex(),
        "signature": signature.hex(),
        "sealed": sealed.hex(),
        "must_fail": cases,
    }
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
