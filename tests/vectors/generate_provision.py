"""Write provision_roster.json: a signed deployment roster and must-fail copies.

Run: ``python tests/vectors/generate_provision.py``. Uses only the standard
library's ``json`` and pyca ``cryptography``, not securefl: the roster's
canonical form (sorted keys, no whitespace, ASCII) and its ECDSA P-256 /
SHA-256 signature by the CA key are computed here from the format in
``securefl/provision/roster.py`` and ``docs/deployment.md``. Every input is
fixed: the CA key is derived from a ``det_bytes`` label (public, not a
secret), the certificate's serial and dates are fixed, and signatures are
deterministic (RFC 6979), so re-running leaves ``git diff`` empty.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import NameOID

OUT = Path(__file__).with_name("provision_roster.json")
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def det_bytes(label: str, n: int) -> bytes:
    """Fixed pseudo-random test input: SHA-256 in counter mode over a label (not a secret)."""
    out, i = b"", 0
    while len(out) < n:
        out += hashlib.sha256(f"securefl-vectors/{label}/{i}".encode()).digest()
        i += 1
    return out[:n]


def ca_key(label: str) -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(det_bytes(label, 32), "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def ca_cert(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securefl vectors CA")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(det_bytes("provision/serial", 16), "big") >> 1)
        .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2036, 1, 1, tzinfo=dt.UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )


def raw_public(private: Ed25519PrivateKey | X25519PrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )


def canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def sign(key: ec.EllipticCurvePrivateKey, body: dict[str, Any]) -> dict[str, Any]:
    signature = key.sign(canonical(body), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    return {**body, "signature": signature.hex()}


def site(name: str) -> dict[str, str]:
    identity = Ed25519PrivateKey.from_private_bytes(det_bytes(f"provision/{name}/id", 32))
    exchange = X25519PrivateKey.from_private_bytes(det_bytes(f"provision/{name}/x", 32))
    return {
        "name": name,
        "public_key": raw_public(identity),
        "exchange_key": raw_public(exchange),
        "cert_sha256": det_bytes(f"provision/{name}/cert", 32).hex(),
    }


def main() -> None:
    key, other = ca_key("provision/ca"), ca_key("provision/other-ca")
    cert = ca_cert(key)
    server_id = Ed25519PrivateKey.from_private_bytes(det_bytes("provision/server/id", 32))
    body: dict[str, Any] = {
        "version": 3,
        "federation": "vectors",
        "server": {
            "name": "server",
            "public_key": raw_public(server_id),
            "cert_sha256": det_bytes("provision/server/cert", 32).hex(),
            "hosts": ["coordinator.localhost", "127.0.0.1"],
            "port": 8443,
        },
        "sites": [site("site-a"), site("site-b"), site("site-c")],
        "issued_at": "2026-01-02T03:04:05+00:00",
    }
    valid = sign(key, body)
    cert.public_key().verify(  # type: ignore[call-arg, union-attr]
        bytes.fromhex(valid["signature"]), canonical(body), ec.ECDSA(hashes.SHA256())
    )

    def edited(change: Any) -> dict[str, Any]:
        copy_ = copy.deepcopy(valid)
        change(copy_)
        return copy_

    intruder = site("site-z")
    must_fail = {
        "tampered_site_key": edited(
            lambda r: r["sites"][1].update(public_key=site("site-y")["public_key"])
        ),
        "tampered_exchange_key": edited(
            lambda r: r["sites"][0].update(exchange_key=site("site-y")["exchange_key"])
        ),
        "added_site": edited(lambda r: r["sites"].append(intruder)),
        "removed_site": edited(lambda r: r["sites"].pop()),
        "swapped_cert_fingerprints": edited(
            lambda r: (
                r["sites"][0].update(cert_sha256=valid["sites"][1]["cert_sha256"]),
                r["sites"][1].update(cert_sha256=valid["sites"][0]["cert_sha256"]),
            )
        ),
        "server_moved": edited(lambda r: r["server"].update(hosts=["evil.localhost"])),
        "signed_by_another_ca": sign(other, {**body, "sites": [*body["sites"], intruder]}),
        "signature_truncated": edited(lambda r: r.update(signature=r["signature"][:-2])),
        "signature_missing": edited(lambda r: r.pop("signature")),
        "duplicate_site_signed_by_the_ca": sign(
            key, {**body, "sites": [body["sites"][0], body["sites"][0]]}
        ),
    }
    vectors = {
        "about": "Signed deployment rosters (version 3); see tests/vectors/README.md.",
        "ca_cert_pem": cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        "valid": {"roster": valid, "canonical_body": canonical(body).decode("ascii")},
        "must_fail": must_fail,
    }
    OUT.write_text(json.dumps(vectors, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
