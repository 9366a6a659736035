"""A real uvicorn HTTPS server on 127.0.0.1 and site clients for the fault tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# the transport tests' PKI builder (a conftest here would shadow other folders' ``conftest``)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "transport"))
from transport_pki import Pki

from securefl.transport._tls import PeerCheck, server_context
from securefl.transport.https_client import HttpsSiteTransport, RetryPolicy
from securefl.transport.https_server import HttpsServerTransport, RunningServer

FED = "fed"


@dataclass
class Https:
    pki: Pki
    transport: HttpsServerTransport
    server: RunningServer
    clients: list[HttpsSiteTransport | httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.port}"

    def site(self, name: str) -> HttpsSiteTransport:
        p = self.pki.sites[name]
        t = HttpsSiteTransport(
            name=name,
            server_url=self.url,
            server_name="localhost",
            ca=p.ca_path,
            cert=p.cert_path,
            key=p.key_path,
            signing_key=p.identity,
            server_key=self.pki.server.identity.public_bytes(),
            retry=RetryPolicy(attempts=4, base=0.01, cap=0.05),
        )
        self.clients.append(t)
        return t

    def raw(self, name: str) -> httpx.Client:
        """A client of its own with ``name``'s certificate (a hostile site's tool)."""
        import ssl

        p = self.pki.sites[name]
        ctx = ssl.create_default_context(cafile=str(self.pki.server.ca_path))
        ctx.load_cert_chain(str(p.cert_path), str(p.key_path))
        client = httpx.Client(base_url=self.url, verify=ctx, timeout=10, trust_env=False)
        self.clients.append(client)
        return client


@contextmanager
def https_server(root: Path, sites: tuple[str, ...], **options: object) -> Iterator[Https]:
    """A server for a fresh PKI of ``sites``; ``options`` go to :class:`HttpsServerTransport`."""
    pki = Pki.make(root, sites=sites)
    transport = HttpsServerTransport(
        federation=FED,
        signing_key=pki.server.identity,
        site_keys={n: p.identity.public_bytes() for n, p in pki.sites.items()},
        peer_check=PeerCheck(ca=pki.server.ca_path, sites=pki.fingerprints(), crl=pki.crl_path),
        max_body=1 << 20,
        **options,  # type: ignore[arg-type]
    )
    ctx = server_context(cert=pki.server.cert_path, key=pki.server.key_path, ca=pki.server.ca_path)
    harness = Https(pki, transport, RunningServer(transport.app, ctx).start())
    try:
        yield harness
    finally:
        for c in harness.clients:
            c.close()
        transport.close()
        harness.server.stop()
