"""Write provision_roster.json: a signed deployment roster and must-fail copies.

Run: ``python tests/vectors/generate_provision.py``. Uses only the standard
library's ``json``, pyca ``cryptography`` and ``blspy``, not securefl: the
roster's canonical form (sorted keys, no whitespace, ASCII), its ECDSA P-256
/ SHA-256 signature by the CA key and the sites' BLS keys and proofs of
possession (IETF proof-of-possession scheme) are computed here from the
format in ``securefl/provision/roster.py`` and ``docs/deployment.md``. Every
input is fixed: the CA key is derived from a ``det_bytes`` label (public,
not a secret), the certificate's serial and dates are fixed, and ECDSA and
BLS signatures are deterministic (RFC 6979; BLS always is), so re-running
leaves ``git diff`` empty.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import blspy
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import NameOID

OUT = Path(__file__).with_name("provision_roster.json")
SITES = ("site-a", "site-b", "site-c")
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


def bls_key(name: str) -> blspy.PrivateKey:
    return blspy.PopSchemeMPL.key_gen(det_bytes(f"provision/{name}/bls", 32))


def site(name: str, *, bls: bool = True) -> dict[str, str]:
    identity = Ed25519PrivateKey.from_private_bytes(det_bytes(f"provision/{name}/id", 32))
    exchange = X25519PrivateKey.from_private_bytes(det_bytes(f"provision/{name}/x", 32))
    entry = {
        "name": name,
        "public_key": raw_public(identity),
        "exchange_key": raw_public(exchange),
        "cert_sha256": det_bytes(f"provision/{name}/cert", 32).hex(),
    }
    if bls:
        key = bls_key(name)
        entry["bls_key"] = bytes(key.get_g1()).hex()
        entry["bls_proof"] = bytes(blspy.PopSchemeMPL.pop_prove(key)).hex()
    return entry


def main() -> None:
    key, other = ca_key("provision/ca"), ca_key("provision/other-ca")
    cert = ca_cert(key)
    server_id = Ed25519PrivateKey.from_private_bytes(det_bytes("provision/server/id", 32))
    body: dict[str, Any] = {
        "version": 4,
        "federation": "vectors",
        "server": {
            "name": "server",
            "public_key": raw_public(server_id),
            "cert_sha256": det_bytes("provision/server/cert", 32).hex(),
            "hosts": ["coordinator.localhost", "127.0.0.1"],
            "port": 8443,
        },
        "sites": [site(n) for n in SITES],
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

    def resigned(change: Any) -> dict[str, Any]:
        """A copy changed and then signed by the CA: refused for its content, not its signature."""
        body_ = copy.deepcopy(body)
        change(body_)
        return sign(key, body_)

    # site-b's rogue key: pk_x - pk_a, so an aggregate "signed by a and b" verifies under pk_x,
    # whose secret the forger holds; no proof of possession exists for it, so b carries x's
    rogue_secret = bls_key("site-x")
    rogue = (
        rogue_secret.get_g1()
        + blspy.G1Element.from_bytes(bytes.fromhex(body["sites"][0]["bls_key"])).negate()
    )
    other_proof = bytes(blspy.PopSchemeMPL.pop_prove(bls_key("site-y"))).hex()
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
        "tampered_bls_key": edited(
            lambda r: r["sites"][2].update(bls_key=site("site-y")["bls_key"])
        ),
        "bls_proof_of_another_key_signed_by_the_ca": resigned(
            lambda b: b["sites"][1].update(bls_proof=other_proof)
        ),
        "bls_key_copied_from_another_site_signed_by_the_ca": resigned(
            lambda b: b["sites"][1].update(
                bls_key=b["sites"][0]["bls_key"], bls_proof=b["sites"][0]["bls_proof"]
            )
        ),
        "rogue_bls_key_signed_by_the_ca": resigned(
            lambda b: b["sites"][1].update(
                bls_key=bytes(rogue).hex(),
                bls_proof=bytes(blspy.PopSchemeMPL.pop_prove(rogue_secret)).hex(),
            )
        ),
        "bls_key_without_its_proof_signed_by_the_ca": resigned(
            lambda b: b["sites"][1].pop("bls_proof")
        ),
        "version_3_with_bls_keys_signed_by_the_ca": resigned(lambda b: b.update(version=3)),
    }
    old_body = {**body, "version": 3, "sites": [site(n, bls=False) for n in SITES]}
    vectors = {
        "about": "Signed deployment rosters (version 4; 3 without BLS keys); "
        "see tests/vectors/README.md.",
        "ca_cert_pem": cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        "valid": {"roster": valid, "canonical_body": canonical(body).decode("ascii")},
        "valid_version_3": {
            "roster": sign(key, old_body),
            "canonical_body": canonical(old_body).decode("ascii"),
        },
        "must_fail": must_fail,
    }
    OUT.write_text(json.dumps(vectors, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
