"""The federation's X.509 PKI: CA, server and site certificates, requests, revocation.

Why a private CA per federation: a site must accept the federation's server
and nobody else, and the server must admit the federation's sites and nobody
else; a public CA would vouch for anyone's domain. Every certificate is
ECDSA P-256 / SHA-256 (every TLS stack and browser accepts it), built with
pyca ``cryptography`` (no hand-made ASN.1), with a random serial.

What each certificate may do is written into it, so a stack that checks
usages refuses misuse: the CA signs certificates and CRLs only (pathlen 0),
the server certificate is for ``serverAuth`` with the federation file's
hosts as subject alternative names, a site certificate is for
``clientAuth`` with the site's name as subject CN. Revocation is a CRL
signed by the CA, which the server reloads and checks on every request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from securefl._deploy_config import is_ip
from securefl.errors import ConfigError, IntegrityError

__all__ = [
    "SITE_URI_PREFIX",
    "CertificateAuthority",
    "build_crl",
    "cert_sha256",
    "check_site_request",
    "issue_server_cert",
    "issue_site_cert",
    "load_cert",
    "load_crl",
    "load_private_key",
    "make_request",
    "new_key",
    "revoked_serials",
    "write_private_key",
    "write_public",
]

#: Subject alternative name URI of a site certificate: ``securefl:site:<name>``.
SITE_URI_PREFIX = "securefl:site:"
_BACKDATE = dt.timedelta(minutes=5)  # tolerate a little clock skew between machines
_CRL_DAYS = 30


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key from the OS CSPRNG (through OpenSSL)."""
    return ec.generate_private_key(ec.SECP256R1())


def _check_p256(key: object, what: str) -> None:
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise IntegrityError(f"{what} is not an ECDSA P-256 key")


@dataclass(frozen=True)
class CertificateAuthority:
    """The federation CA: its private key (coordinator only) and self-signed certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, federation: str, *, days: int) -> CertificateAuthority:
        """A new CA for ``federation``, valid ``days`` days; CA:TRUE pathlen 0."""
        key = new_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, f"securefl {federation} CA"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation),
            ]
        )
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def load(cls, folder: Path) -> CertificateAuthority:
        """Read ``ca.key.pem`` and ``ca.cert.pem`` from the coordinator's ``ca/`` folder."""
        key = load_private_key(folder / "ca.key.pem")
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{folder / 'ca.key.pem'}: not an ECDSA CA key")
        cert = load_cert(folder / "ca.cert.pem")
        if cert.public_key() != key.public_key():
            raise ConfigError(f"{folder}: ca.key.pem does not belong to ca.cert.pem")
        return cls(key, cert)

    def _leaf(
        self,
        public_key: ec.EllipticCurvePublicKey,
        subject: x509.Name,
        sans: Sequence[x509.GeneralName],
        usage: x509.ObjectIdentifier,
        days: int,
    ) -> x509.Certificate:
        _check_p256(public_key, "the certified key")
        now = _now()
        not_after = min(now + dt.timedelta(days=days), self.cert.not_valid_after_utc)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(self.key, hashes.SHA256())
        )


def issue_server_cert(
    ca: CertificateAuthority,
    public_key: ec.EllipticCurvePublicKey,
    *,
    hosts: Sequence[str],
    days: int,
) -> x509.Certificate:
    """The server's TLS certificate: serverAuth only, every host as a DNS or IP SAN."""
    if not hosts:
        raise ConfigError("server.hosts must name at least one host")
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(h)) if is_ip(h) else x509.DNSName(h) for h in hosts
    ]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    return ca._leaf(public_key, subject, sans, ExtendedKeyUsageOID.SERVER_AUTH, days)


def issue_site_cert(
    ca: CertificateAuthority, public_key: ec.EllipticCurvePublicKey, *, site: str, days: int
) -> x509.Certificate:
    """A site's TLS client certificate: clientAuth only, subject CN = the site's name."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, site)])
    sans = [x509.UniformResourceIdentifier(SITE_URI_PREFIX + site)]
    return ca._leaf(public_key, subject, sans, ExtendedKeyUsageOID.CLIENT_AUTH, days)


def make_request(key: ec.EllipticCurvePrivateKey, site: str) -> x509.CertificateSigningRequest:
    """A certificate request for ``site`` (CN = its name), signed by its own TLS key."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, site)])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())


def check_site_request(csr: x509.CertificateSigningRequest, site: str) -> ec.EllipticCurvePublicKey:
    """The requested P-256 key, after checking the request's self-signature and its CN.

    Only the key and the name are taken from a request; usages, lifetime and
    every extension come from the CA, whatever the request asks for.
    """
    if not csr.is_signature_valid:
        raise IntegrityError("the certificate request's signature does not verify")
    names = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [site]:
        raise ConfigError(f"the certificate request names {names!r}, not the site {site!r}")
    key = csr.public_key()
    _check_p256(key, "the requested key")
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def cert_sha256(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the certificate's DER: the fingerprint the signed roster pins."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def build_crl(
    ca: CertificateAuthority, serials: Iterable[tuple[int, dt.datetime]], *, days: int = _CRL_DAYS
) -> x509.CertificateRevocationList:
    """A CRL signed by the CA listing every ``(serial, revoked_at)``; next update in ``days``."""
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - _BACKDATE)
        .next_update(now + dt.timedelta(days=days))
    )
    for serial, when in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca.key, hashes.SHA256())


def load_crl(path: Path, ca_cert: x509.Certificate) -> x509.CertificateRevocationList:
    """Read a CRL and refuse it unless the federation CA signed it."""
    try:
        crl = x509.load_pem_x509_crl(Path(path).read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such revocation list") from None
    except ValueError:
        raise ConfigError(f"{path}: not a PEM revocation list") from None
    if crl.issuer != ca_cert.subject or not _crl_signed_by(crl, ca_cert):
        raise IntegrityError(f"{path}: the revocation list is not signed by the federation CA")
    return crl


def _crl_signed_by(crl: x509.CertificateRevocationList, ca_cert: x509.Certificate) -> bool:
    key = ca_cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        return crl.is_signature_valid(key)
    except (InvalidSignature, TypeError):
        return False


def revoked_serials(crl: x509.CertificateRevocationList) -> frozenset[int]:
    """The serial numbers a CRL revokes."""
    return frozenset(r.serial_number for r in crl)


def load_cert(path: Path) -> x509.Certificate:
    """Read one PEM certificate; errors name the file."""
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such certificate") from None
    except ValueError:
        raise ConfigError(f"{path}: not a PEM certificate") from None


def load_private_key(path: Path) -> PrivateKeyTypes:
    """Read an unencrypted PEM PKCS8 private key; errors name the file."""
    try:
        return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such key file") from None
    except (ValueError, TypeError):
        raise ConfigError(f"{path}: not an unencrypted PEM private key") from None


def write_private_key(path: Path, key: PrivateKeyTypes) -> None:
    """Write a private key as PEM PKCS8, owner-only (0600) from the moment it exists.

    The file is created with mode 0600 (not chmod-ed after writing), so no
    other user can open it in between; an existing file is replaced.
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = Path(path)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # the umask may have narrowed, never widened, it
        handle.write(pem)


def write_public(path: Path, data: bytes | str, *, mode: int = 0o644) -> None:
    """Write public material (certificates, CRLs, JSON, TOML)."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    os.chmod(path, mode)
