"""Write tests/vectors/he_signatures.json: what he-mode sites sign, with fixed inputs.

Run from the repository root: ``python tests/vectors/generate_he.py``. The
output is deterministic (fixed seeds and inputs, Ed25519 is deterministic,
sorted JSON keys), so re-running it must leave ``git diff`` empty.

Every value is computed twice: through ``securefl.he._trust`` and by an
independent route written out here (the length-prefixed encoding and the
chunk digest from ``struct`` and ``hashlib``, signatures with pyca
``cryptography`` directly). Must-fail cases change one signed field each.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from securefl.hazmat.sign import SigningKey
from securefl.he._trust import chunks_digest, sign_context, update_message

OUT = Path(__file__).resolve().parent


def det_bytes(label: str, n: int) -> bytes:
    """Fixed pseudo-random test input: SHA-256 in counter mode over a label (not a secret)."""
    out, i = b"", 0
    while len(out) < n:
        out += hashlib.sha256(f"securefl-vectors/{label}/{i}".encode()).digest()
        i += 1
    return out[:n]


def encode_ref(context: bytes, *fields: Any) -> bytes:
    out = context + b"\x00" + struct.pack(">I", len(fields))
    for f in fields:
        if isinstance(f, bytes):
            out += b"\x01" + struct.pack(">I", len(f)) + f
        elif isinstance(f, str):
            b = f.encode()
            out += b"\x02" + struct.pack(">I", len(b)) + b
        else:
            out += b"\x03" + struct.pack(">I", 8) + struct.pack(">Q", f)
    return out


def digest_ref(chunks: list[bytes]) -> bytes:
    data = b"securefl/he/chunks/v1\x00" + struct.pack(">Q", len(chunks))
    for c in chunks:
        data += struct.pack(">Q", len(c)) + c
    return hashlib.sha256(data).digest()


UPLOAD = {
    "federation": "securefl-vectors",
    "round_id": 7,
    "site": "hospital-b",
    "key_id": det_bytes("he/key-id", 16),
    "preset": "bfv-n4096",
    "dimension": 5000,
    "weight": 123.0,
    "max_weight": 500.0,
    "round_digest": det_bytes("he/round-start", 32),
}
MUST_FAIL = {
    "other round": {"round_id": 8},
    "other site": {"site": "hospital-c"},
    "other federation": {"federation": "securefl-vectors-2"},
    "weight one ulp higher": {"weight": 123.00000000000001},
    "other max_weight": {"max_weight": 499.0},
    "other key id": {"key_id": det_bytes("he/other-key-id", 16)},
    "other preset": {"preset": "ckks-n4096"},
    "other dimension": {"dimension": 5001},
    "other round start": {"round_digest": det_bytes("he/other-round-start", 32)},
}


def _hex(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v.hex() if isinstance(v, bytes) else v for k, v in d.items()}


def upload_vectors() -> dict[str, Any]:
    seed = det_bytes("he/site-key", 32)
    ref_key = Ed25519PrivateKey.from_private_bytes(seed)
    key = SigningKey.from_private_bytes(seed)
    chunks = [det_bytes("he/chunk0", 40), det_bytes("he/chunk1", 7)]
    digest = chunks_digest(chunks)
    assert digest == digest_ref(chunks)
    assert chunks_digest([chunks[0] + chunks[1]]) != digest  # splits never collide

    def message(fields: dict[str, Any]) -> bytes:
        got = update_message(**fields, digest=digest)
        ref = encode_ref(
            b"securefl/signed/v1",
            "he/update/v2",
            fields["federation"],
            fields["round_id"],
            fields["site"],
            fields["key_id"],
            fields["preset"],
            fields["dimension"],
            struct.pack(">d", fields["weight"]),
            struct.pack(">d", fields["max_weight"]),
            fields["round_digest"],
            digest,
        )
        assert got == ref
        return got

    msg = message(UPLOAD)
    signature = key.sign(msg)
    assert signature == ref_key.sign(msg)
    fails = []
    for why, change in MUST_FAIL.items():
        fields = {**UPLOAD, **change}
        assert message(fields) != msg
        fails.append({"why": why, "fields": _hex(fields)})
    return {
        "seed": seed.hex(),
        "public_key": ref_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex(),
        "chunks": [c.hex() for c in chunks],
        "digest": digest.hex(),
        "fields": _hex(UPLOAD),
        "message": msg.hex(),
        "signature": signature.hex(),
        "must_fail": fails,
    }


def context_vectors() -> dict[str, Any]:
    seed = det_bytes("he/maker-key", 32)
    key = SigningKey.from_private_bytes(seed)
    ref_key = Ed25519PrivateKey.from_private_bytes(seed)
    inner = det_bytes("he/context", 64)
    out = []
    for kind, domain in (("public", "he/public-context/v1"), ("secret", "he/secret-context/v1")):
        signed = sign_context(
            inner, kind=kind, federation="securefl-vectors", maker="hospital-a", signing_key=key
        )
        ref_msg = encode_ref(b"securefl/signed/v1", domain, "securefl-vectors", "hospital-a", inner)
        assert ref_key.sign(ref_msg).hex() in signed.hex()
        out.append({"kind": kind, "signed": signed.hex()})
    return {
        "seed": seed.hex(),
        "public_key": ref_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex(),
        "federation": "securefl-vectors",
        "maker": "hospital-a",
        "context": inner.hex(),
        "signed": out,
    }


def main() -> None:
    data = {"upload": upload_vectors(), "context": context_vectors()}
    path = OUT / "he_signatures.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=True) + "\n")


if __name__ == "__main__":
    main()
