"""Site-side key generation: ``securefl provision request --site NAME --out DIR``.

Why: a hospital may not want its private keys made on the coordinator's
machine. Here the site makes its TLS key, its Ed25519 identity key and its
X25519 exchange key itself, keeps them in DIR (0600), and sends the
coordinator only ``NAME.req``: a certificate request plus the two public
keys, signed with the identity key (so the request proves it holds it; the
CSR's own signature proves the TLS key). The coordinator signs it into the
federation (:func:`securefl.provision.coordinator.provision` with
``requests``) and returns the public part of the kit, which the site copies
into DIR next to its keys.

The request also carries the site's BLS key (derived from the identity
seed, so no fourth secret file) with its proof of possession, for the
neighbourhood mask round. Both are under the identity key's signature, and
the BLS key signs the same request: a key copied from another site (whose
proof is valid) cannot sign a request naming this site and identity, and a
rogue key has no valid proof. The coordinator checks all of it before the
key goes on the roster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from securefl.config import SiteSpec
from securefl.errors import ConfigError, DataError, IntegrityError, SecureFLError
from securefl.hazmat import bls
from securefl.hazmat.sign import SigningKey, signed_message, verify
from securefl.provision.pki import check_site_request, make_request, new_key, write_private_key
from securefl.reports._canonical import strict_loads

__all__ = ["REQUEST_DOMAIN", "REQUEST_VERSION", "SiteRequest", "make_site_request"]

REQUEST_VERSION = 2
REQUEST_DOMAIN = "securefl/site-request/v2"
_FIELDS = {
    "version", "site", "csr", "identity_key", "exchange_key", "bls_key", "bls_proof",
    "signature", "bls_signature",
}  # fmt: skip


def _message(
    site: str, csr_der: bytes, identity: bytes, exchange: bytes, bls_key: bytes, bls_proof: bytes
) -> bytes:
    return signed_message(REQUEST_DOMAIN, site, csr_der, identity, exchange, bls_key, bls_proof)


@dataclass(frozen=True, kw_only=True)
class SiteRequest:
    """A site's verified request: its name, TLS key request, identity and exchange keys."""

    site: str
    csr: x509.CertificateSigningRequest
    identity_key: bytes
    exchange_key: bytes
    bls_key: bytes
    bls_proof: bytes

    @property
    def tls_public_key(self) -> ec.EllipticCurvePublicKey:
        """The TLS public key to certify (checked P-256, CN = site, self-signed)."""
        return check_site_request(self.csr, self.site)

    @classmethod
    def load(cls, path: str | Path) -> SiteRequest:
        """Read ``NAME.req`` and check both of its signatures; errors name the file."""
        path = Path(path)
        try:
            data = strict_loads(path.read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such request file") from None
        except (OSError, ValueError, RecursionError) as exc:
            raise DataError(f"{path}: not a site request ({exc})") from None
        try:
            return cls._from_dict(data)
        except SecureFLError as exc:
            raise type(exc)(f"{path}: {exc}") from None

    @classmethod
    def _from_dict(cls, data: object) -> SiteRequest:
        if isinstance(data, dict) and data.get("version") == 1:
            raise DataError(
                "a version 1 request (made by an older securefl) carries no BLS key; make the "
                "request again with this version: securefl provision request --force"
            )
        if not isinstance(data, dict) or set(data) != _FIELDS:
            raise DataError(f"a site request has exactly the fields {sorted(_FIELDS)}")
        if data["version"] != REQUEST_VERSION or isinstance(data["version"], bool):
            raise DataError(f"unsupported request version {data['version']!r}")
        site = data["site"]
        if not isinstance(site, str):
            raise DataError("site must be a string")
        SiteSpec(name=site)  # the same name rule as the federation file
        try:
            csr = x509.load_pem_x509_csr(str(data["csr"]).encode("ascii"))
            identity = bytes.fromhex(data["identity_key"])
            exchange = bytes.fromhex(data["exchange_key"])
            bls_key = bytes.fromhex(data["bls_key"])
            bls_proof = bytes.fromhex(data["bls_proof"])
            signature = bytes.fromhex(data["signature"])
            bls_signature = bytes.fromhex(data["bls_signature"])
        except (ValueError, TypeError, UnicodeEncodeError):
            raise DataError("malformed certificate request or key") from None
        if len(exchange) != 32:
            raise DataError("exchange_key must be 32 bytes")
        der = csr.public_bytes(serialization.Encoding.DER)
        message = _message(site, der, identity, exchange, bls_key, bls_proof)
        try:
            verify(identity, message, signature)
        except IntegrityError:
            raise IntegrityError("the request is not signed by its identity key") from None
        try:
            bls.check_possession(bls_key, bls_proof)
        except IntegrityError as exc:
            raise IntegrityError(f"the request's BLS key is refused: {exc}") from None
        try:  # the BLS key's holder made this very request (a copied key cannot sign it)
            bls.verify_one(bls_key, message, bls_signature)
        except IntegrityError:
            raise IntegrityError("the request's BLS key did not sign the request") from None
        request = cls(
            site=site,
            csr=csr,
            identity_key=identity,
            exchange_key=exchange,
            bls_key=bls_key,
            bls_proof=bls_proof,
        )
        _ = request.tls_public_key  # CSR self-signature, CN and curve
        return request


def make_site_request(site: str, out: str | Path, *, force: bool = False) -> Path:
    """Make a site's three private keys in ``out`` (0600) and ``out/SITE.req``; return its path.

    The private keys never leave ``out``; only the request file goes to the
    coordinator. Refuses to replace keys already in ``out`` unless ``force``.
    The BLS key is derived from the identity key, so it needs no file.
    """
    SiteSpec(name=site)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    names = ("tls.key.pem", "identity.key.pem", "exchange.key.pem")
    existing = [n for n in names if (folder / n).exists()]
    if existing and not force:
        raise ConfigError(
            f"{folder / existing[0]} exists: refusing to replace a site's keys; "
            "use another --out, or --force to replace them"
        )
    tls = new_key()
    identity = Ed25519PrivateKey.generate()
    exchange = X25519PrivateKey.generate()
    write_private_key(folder / "tls.key.pem", tls)
    write_private_key(folder / "identity.key.pem", identity)
    write_private_key(folder / "exchange.key.pem", exchange)
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    identity_pub = identity.public_key().public_bytes(*raw)
    exchange_pub = exchange.public_key().public_bytes(*raw)
    bls_key = bls.BlsKey.from_identity(SigningKey(identity))
    bls_pub, bls_proof = bls_key.public_bytes(), bls_key.prove_possession()
    csr = make_request(tls, site)
    der = csr.public_bytes(serialization.Encoding.DER)
    message = _message(site, der, identity_pub, exchange_pub, bls_pub, bls_proof)
    request = {
        "version": REQUEST_VERSION,
        "site": site,
        "csr": csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        "identity_key": identity_pub.hex(),
        "exchange_key": exchange_pub.hex(),
        "bls_key": bls_pub.hex(),
        "bls_proof": bls_proof.hex(),
        "signature": identity.sign(message).hex(),
        "bls_signature": bls_key.sign(message).hex(),
    }
    path = folder / f"{site}.req"
    path.write_text(json.dumps(request, indent=2) + "\n", encoding="utf-8")
    return path
