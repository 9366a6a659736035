"""A test federation's PKI, laid out like provisioning kits (docs/transport.md).

Made with ``cryptography`` directly: ECDSA P-256 CA (pathlen 0), a server
certificate (serverAuth, SANs localhost and 127.0.0.1), one client
certificate per site (clientAuth, CN = site), Ed25519 identity keys, a CRL,
and the hostile variants the fault tests present.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from securefl.hazmat.sign import SigningKey
from securefl.transport._tls import fingerprint

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)
    return path


@dataclass
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def make(cls, name: str = "test federation CA") -> Authority:
        key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - DAY)
            .not_valid_after(NOW + 3650 * DAY)
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(
        self,
        name: str,
        *,
        usage: ExtendedKeyUsageOID | None = ExtendedKeyUsageOID.CLIENT_AUTH,
        ca: bool = False,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        sans: list[x509.GeneralName] | None = None,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = _key()
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or NOW - DAY)
            .not_valid_after(not_after or NOW + 397 * DAY)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
        )
        if usage is not None:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, b.sign(self.key, hashes.SHA256())

    def crl(self, revoked: list[int]) -> bytes:
        b = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(NOW - DAY)
            .next_update(NOW + 30 * DAY)
        )
        for serial in revoked:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(NOW - DAY)
                .build()
            )
        return b.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclass
class Party:
    """One kit folder: TLS cert and key, identity key, and the CA cert."""

    name: str
    folder: Path
    cert: x509.Certificate
    identity: SigningKey

    @property
    def cert_path(self) -> Path:
        return self.folder / "tls.cert.pem"

    @property
    def key_path(self) -> Path:
        return self.folder / "tls.key.pem"

    @property
    def ca_path(self) -> Path:
        return self.folder / "ca.cert.pem"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert.public_bytes(serialization.Encoding.DER))


@dataclass
class Pki:
    """``root/ca``, ``root/server`` and ``root/<site>`` folders shaped like kits."""

    root: Path
    ca: Authority
    server: Party
    sites: dict[str, Party] = field(default_factory=dict)
    revoked: list[int] = field(default_factory=list)
    status_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @classmethod
    def make(cls, root: Path, sites: tuple[str, ...] = ("site-a", "site-b")) -> Pki:
        ca = Authority.make()
        _write(root / "ca" / "ca.key.pem", _pem_key(ca.key), private=True)
        ca_pem = ca.cert.public_bytes(serialization.Encoding.PEM)
        _write(root / "ca" / "ca.cert.pem", ca_pem)
        key, cert = ca.issue(
            "localhost",
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        )
        pki = cls(root=root, ca=ca, server=cls._party(root / "server", "server", ca, key, cert))
        _write(root / "server" / "status.token", pki.status_token.encode(), private=True)
        for site in sites:
            pki.add_site(site)
        pki.write_crl()
        return pki

    @staticmethod
    def _party(
        folder: Path,
        name: str,
        ca: Authority,
        key: ec.EllipticCurvePrivateKey,
        cert: x509.Certificate,
    ) -> Party:
        _write(folder / "ca.cert.pem", ca.cert.public_bytes(serialization.Encoding.PEM))
        _write(folder / "tls.cert.pem", cert.public_bytes(serialization.Encoding.PEM))
        _write(folder / "tls.key.pem", _pem_key(key), private=True)
        identity = SigningKey.generate()
        seed = identity.export_private(i_understand_this_exports_a_secret=True)
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        pem = Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write(folder / "identity.key.pem", pem, private=True)
        return Party(name=name, folder=folder, cert=cert, identity=identity)

    def add_site(
        self,
        name: str,
        *,
        authority: Authority | None = None,
        folder: str | None = None,
        **issue: object,
    ) -> Party:
        """Issue a site certificate (from ``authority``, default the federation CA)."""
        key, cert = (authority or self.ca).issue(name, **issue)  # type: ignore[arg-type]
        party = self._party(self.root / (folder or name), name, self.ca, key, cert)
        if folder is None:
            self.sites[name] = party
        return party

    @property
    def crl_path(self) -> Path:
        return self.root / "server" / "crl.pem"

    def write_crl(self) -> None:
        data = self.ca.crl(self.revoked)
        _write(self.root / "ca" / "crl.pem", data)
        _write(self.crl_path, data)

    def revoke(self, party: Party) -> None:
        self.revoked.append(party.cert.serial_number)
        self.write_crl()

    def identity_keys(self) -> dict[str, bytes]:
        keys = {name: p.identity.public_bytes() for name, p in self.sites.items()}
        return {**keys, "server": self.server.identity.public_bytes()}

    def fingerprints(self) -> dict[str, str]:
        return {name: p.fingerprint for name, p in self.sites.items()}
