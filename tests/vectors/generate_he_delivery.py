"""Write tests/vectors/he_delivery.json: the HE secret context sealed to one site, fixed inputs.

Run from the repository root: ``python tests/vectors/generate_he_delivery.py``.
The output is deterministic (fixed keys, ephemeral key and nonce; sorted JSON
keys), so re-running it must leave ``git diff`` empty.

The bundle is computed twice: through ``securefl.he._delivery._seal_from_parts``
and by an independent route written out here: X25519 with pyca directly, the
length-prefixed ``info`` and associated data from ``struct``, HKDF-SHA256 from
``hmac`` (RFC 5869), AES-256-GCM from AES-ECB and a bitwise GHASH, and the
msgpack wrapper from ``msgpack`` itself. The two must agree byte for byte.
Must-fail cases each change one thing the recipient checks (or one byte on the
way); every one is checked here to fail.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_hazmat import det_bytes, encode_ref, gcm_ref, hkdf_ref

from securefl.errors import IntegrityError, WireError
from securefl.hazmat.keys import KeyPair
from securefl.he._delivery import _seal_from_parts, _unseal

OUT = Path(__file__).resolve().parent
SIGNED = b"securefl/signed/v1"

INPUTS = {
    "federation": "securefl-vectors",
    "maker": "site-a",
    "recipient": "site-b",
    # stand-ins: the real plaintext is a maker-signed secret context (about 60 KB)
    "plaintext": det_bytes("he-delivery/plaintext", 64).hex(),
    "signed_public_context": det_bytes("he-delivery/public", 48).hex(),
    "recipient_private": det_bytes("he-delivery/recipient", 32).hex(),
    "ephemeral_private": det_bytes("he-delivery/ephemeral", 32).hex(),
    "nonce": det_bytes("he-delivery/nonce", 12).hex(),
    "other_private": det_bytes("he-delivery/other-site", 32).hex(),
}


def _public(private: bytes) -> bytes:
    key = X25519PrivateKey.from_private_bytes(private).public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def reference(v: dict[str, str]) -> dict[str, str]:
    """The bundle by the independent route."""
    fed, maker, rcpt = v["federation"], v["maker"], v["recipient"]
    rcpt_pub = _public(bytes.fromhex(v["recipient_private"]))
    eph_priv = bytes.fromhex(v["ephemeral_private"])
    eph_pub = _public(eph_priv)
    public_sha = hashlib.sha256(bytes.fromhex(v["signed_public_context"])).digest()
    shared = X25519PrivateKey.from_private_bytes(eph_priv).exchange(
        X25519PublicKey.from_public_bytes(rcpt_pub)
    )
    info = encode_ref(SIGNED, "he/bundle-key/v1", fed, maker, rcpt, public_sha, eph_pub, rcpt_pub)
    ad = encode_ref(SIGNED, "he/bundle-ad/v1", fed, maker, rcpt, public_sha, eph_pub)
    key = hkdf_ref(shared, info, 32)
    box = gcm_ref(key, bytes.fromhex(v["nonce"]), bytes.fromhex(v["plaintext"]), ad)
    bundle = msgpack.packb(
        {
            "v": 1,
            "format": "securefl-he-sealed-context",
            "federation": fed,
            "maker": maker,
            "recipient": rcpt,
            "public_sha256": public_sha,
            "ephemeral": eph_pub,
            "box": box,
        },
        use_bin_type=True,
    )
    return {
        "recipient_public": rcpt_pub.hex(),
        "ephemeral_public": eph_pub.hex(),
        "public_sha256": public_sha.hex(),
        "info": info.hex(),
        "associated_data": ad.hex(),
        "key": key.hex(),
        "box": box.hex(),
        "bundle": bundle.hex(),
    }


def through_securefl(v: dict[str, str]) -> bytes:
    return _seal_from_parts(
        bytes.fromhex(v["plaintext"]),
        federation=v["federation"],
        maker=v["maker"],
        recipient=v["recipient"],
        recipient_exchange_key=_public(bytes.fromhex(v["recipient_private"])),
        signed_public_context=bytes.fromhex(v["signed_public_context"]),
        ephemeral=KeyPair.from_private_bytes(bytes.fromhex(v["ephemeral_private"])),
        nonce=bytes.fromhex(v["nonce"]),
    )


def _rewrite(bundle: bytes, **changes: Any) -> bytes:
    obj = msgpack.unpackb(bundle, raw=False)
    obj.update(changes)
    return msgpack.packb(obj, use_bin_type=True)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def must_fail(v: dict[str, str], bundle: bytes) -> list[dict[str, str]]:
    """Each case: the bundle bytes and the recipient's own expectations, which must refuse it."""
    obj = msgpack.unpackb(bundle, raw=False)
    own = {
        "recipient": v["recipient"],
        "recipient_private": v["recipient_private"],
        "federation": v["federation"],
        "keymaker": v["maker"],
        "signed_public_context": v["signed_public_context"],
    }
    other_pub = det_bytes("he-delivery/other-public", 48).hex()
    cases: list[tuple[str, bytes, dict[str, str]]] = [
        (
            "opened by another site (a swapped bundle)",
            bundle,
            {"recipient": "site-c", "recipient_private": v["other_private"]},
        ),
        (
            "re-addressed to another site",
            _rewrite(bundle, recipient="site-c"),
            {"recipient": "site-c", "recipient_private": v["other_private"]},
        ),
        (
            "re-addressed and opened with the addressee's key",
            _rewrite(bundle, recipient="site-c"),
            {"recipient": "site-c"},
        ),
        ("another maker than the recipient's configured keymaker", bundle, {"keymaker": "site-c"}),
        (
            "maker field rewritten to the configured keymaker",
            _rewrite(bundle, maker="site-c"),
            {"keymaker": "site-c"},
        ),
        ("announced public context differs", bundle, {"signed_public_context": other_pub}),
        (
            "public hash rewritten to the announced context",
            _rewrite(bundle, public_sha256=hashlib.sha256(bytes.fromhex(other_pub)).digest()),
            {"signed_public_context": other_pub},
        ),
        ("another federation", bundle, {"federation": "other-federation"}),
        ("flipped ciphertext byte", _rewrite(bundle, box=_flip(obj["box"], 20)), {}),
        ("flipped tag byte", _rewrite(bundle, box=_flip(obj["box"], len(obj["box"]) - 1)), {}),
        ("flipped nonce byte", _rewrite(bundle, box=_flip(obj["box"], 0)), {}),
        ("flipped ephemeral key byte", _rewrite(bundle, ephemeral=_flip(obj["ephemeral"], 3)), {}),
        ("truncated box", _rewrite(bundle, box=obj["box"][:20]), {}),
        ("low-order ephemeral key", _rewrite(bundle, ephemeral=bytes(32)), {}),
    ]
    out = []
    for name, data, changes in cases:
        expect = {**own, **changes}
        try:
            _unseal(
                data,
                recipient=expect["recipient"],
                exchange_key=KeyPair.from_private_bytes(bytes.fromhex(expect["recipient_private"])),
                federation=expect["federation"],
                keymaker=expect["keymaker"],
                signed_public_context=bytes.fromhex(expect["signed_public_context"]),
            )
        except (IntegrityError, WireError):
            pass
        else:
            raise SystemExit(f"must-fail case opened: {name}")
        out.append({"name": name, "bundle": data.hex(), **expect})
    return out


def main() -> None:
    ref = reference(INPUTS)
    ours = through_securefl(INPUTS)
    if ours.hex() != ref["bundle"]:
        raise SystemExit("securefl and the reference route disagree on the sealed bundle")
    doc = {
        "seal": {"inputs": INPUTS, "expected": ref},
        "must_fail": must_fail(INPUTS, ours),
    }
    path = OUT / "he_delivery.json"
    path.write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n")
    print(f"wrote {path.name}")


if __name__ == "__main__":
    main()
