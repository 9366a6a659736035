"""TLS for the HTTPS transport: contexts, and the peer checks OpenSSL leaves to us.

OpenSSL (through Python's :mod:`ssl`) verifies that a client certificate
chains to the federation CA and is within its validity period at the
handshake. It does not refuse a CA certificate used as a leaf, nor a
certificate without the clientAuth extended key usage, it knows nothing of
our revocation list unless told at context creation (and then only at the
handshake), and it cannot know the signed roster. uvicorn (0.54) passes no
client certificate to the application, so our protocol subclasses
(:class:`PeerCertProtocol` of h11, ``PeerCertHttpToolsProtocol`` of httptools)
read it from the connection's ``ssl_object`` and puts it in the ASGI scope
(``scope["extensions"]["tls"]``, as the ASGI TLS extension names it), and
:class:`PeerCheck` runs the missing checks on **every request**, with the
CRL reloaded whenever its file changes: a site revoked while its connection
stays open is refused from its next request on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import ssl
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from uvicorn.protocols.http.h11_impl import H11Protocol

from securefl.errors import SecureFLError

__all__ = [
    "PEER_CERT_KEY",
    "PEER_CERT_PROTOCOL",
    "PeerCertProtocol",
    "PeerCheck",
    "PeerRefused",
    "client_context",
    "fingerprint",
    "server_context",
]

#: Where the peer's DER certificate sits in ``scope["extensions"]["tls"]``.
PEER_CERT_KEY = "securefl.peer_cert_der"


class PeerRefused(SecureFLError):
    """A TLS peer passed the handshake but is not admitted; the message says why."""


def server_context(*, cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """TLS 1.3 only, a client certificate required and chained to the federation CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(ca))
    ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    return ctx


def client_context(*, ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.3 only; the server must chain to the federation CA and match the name asked."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    ctx.load_verify_locations(cafile=str(ca))
    ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    return ctx


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate, lowercase hex (the roster's ``cert_sha256``)."""
    return hashlib.sha256(der).hexdigest()


class PeerCheck:
    """Admit a client certificate only if it is a pinned, unrevoked site leaf.

    ``sites`` maps each roster site to the SHA-256 fingerprint (hex) of the
    certificate the signed roster pins for it. ``crl`` is the CA's
    revocation list (PEM); it is re-read when its modification time or size
    changes, its signature is checked against the CA, and an unreadable or
    unsigned list refuses everyone (fail closed). ``now`` is injectable for
    tests of the validity check.
    """

    def __init__(
        self,
        *,
        ca: Path,
        sites: Mapping[str, str],
        crl: Path | None,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._ca = x509.load_pem_x509_certificate(Path(ca).read_bytes())
        self._sites = {name: fp.lower() for name, fp in sites.items()}
        self._crl_path = crl
        self._now = now
        self._lock = threading.Lock()
        self._crl_stamp: tuple[int, int] | None = None
        self._revoked: frozenset[int] | None = frozenset()

    def check(self, der: bytes | None) -> str:
        """The site name ``der`` proves, or :class:`PeerRefused` naming the reason."""
        if not der:
            raise PeerRefused("no client certificate")
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            raise PeerRefused("unreadable client certificate") from None
        basic = _extension(cert, x509.BasicConstraints)
        if basic is None or basic.ca:
            raise PeerRefused("a CA certificate is not a client certificate")
        eku = _extension(cert, x509.ExtendedKeyUsage)
        if eku is None or ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
            raise PeerRefused("certificate lacks the clientAuth usage")
        now = self._now()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise PeerRefused("certificate is outside its validity period")
        if cert.serial_number in self._revoked_serials():
            raise PeerRefused("certificate is revoked")
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        name = str(names[0].value) if len(names) == 1 else ""
        if name not in self._sites:
            raise PeerRefused(f"certificate name {name!r} is not a site on the roster")
        if fingerprint(der) != self._sites[name]:
            raise PeerRefused(f"certificate of {name!r} is not the one the roster pins")
        return name

    def _revoked_serials(self) -> frozenset[int]:
        if self._crl_path is None:
            return frozenset()
        with self._lock:
            try:
                st = os.stat(self._crl_path)
                stamp = (st.st_mtime_ns, st.st_size)
            except OSError:
                stamp = None
            if stamp is None or stamp != self._crl_stamp:
                self._crl_stamp = stamp
                self._revoked = self._load_crl()
            if self._revoked is None:
                raise PeerRefused("the revocation list is missing or invalid")
            return self._revoked

    def _load_crl(self) -> frozenset[int] | None:
        assert self._crl_path is not None
        try:
            crl = x509.load_pem_x509_crl(Path(self._crl_path).read_bytes())
        except (OSError, ValueError):
            return None
        public = self._ca.public_key()
        if crl.issuer != self._ca.subject or not isinstance(
            public, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)
        ):
            return None
        if not crl.is_signature_valid(public):
            return None
        return frozenset(r.serial_number for r in crl)


def _extension(cert: x509.Certificate, kind: type[Any]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _pass_peer_cert(protocol: Any, transport: asyncio.Transport) -> None:
    """Wrap ``protocol.app`` so every request on this connection sees the peer certificate.

    asyncio and uvloop call ``connection_made`` after the TLS handshake, so
    the peer certificate is known; every request on the connection gets it
    in ``scope["extensions"]["tls"][PEER_CERT_KEY]`` (DER bytes, or None).
    """
    ssl_object = transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    inner: Callable[..., Any] = protocol.app

    async def app(scope: Any, receive: Any, send: Any) -> None:
        extensions = dict(scope.get("extensions") or {})
        extensions["tls"] = {**extensions.get("tls", {}), PEER_CERT_KEY: der}
        scope["extensions"] = extensions
        await inner(scope, receive, send)

    protocol.app = app


class PeerCertProtocol(H11Protocol):
    """uvicorn's h11 protocol (pure Python), passing the peer certificate to the app."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        _pass_peer_cert(self, transport)
        super().connection_made(transport)


try:  # the C HTTP parser: a dependency on Linux, optional elsewhere
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - exercised where httptools is not installed
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

if HttpToolsProtocol is not None:

    class PeerCertHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol (C parser), passing the peer certificate to the app."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            _pass_peer_cert(self, transport)
            super().connection_made(transport)

    #: the protocol the server runs: httptools where installed, else h11
    PEER_CERT_PROTOCOL: type[asyncio.Protocol] = PeerCertHttpToolsProtocol
else:  # pragma: no cover
    PEER_CERT_PROTOCOL = PeerCertProtocol
