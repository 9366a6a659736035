"""A real uvicorn HTTPS server on 127.0.0.1 (ephemeral port) and its sites, per test."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from transport_pki import Party, Pki

from securefl.transport._tls import PEER_CERT_PROTOCOL, PeerCheck, server_context
from securefl.transport.https_client import HttpsSiteTransport, RetryPolicy
from securefl.transport.https_server import LOOP, HttpsServerTransport, RunningServer
from securefl.wire import Envelope

FEDERATION = "fed"


@dataclass
class Harness:
    pki: Pki
    transport: HttpsServerTransport
    server: RunningServer
    clients: list[HttpsSiteTransport | httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.port}"

    def site(self, name: str, *, party: Party | None = None, **kw: object) -> HttpsSiteTransport:
        p = party or self.pki.sites[name]
        kw.setdefault("retry", RetryPolicy(attempts=3, base=0.01, cap=0.05))
        t = HttpsSiteTransport(
            name=name,
            server_url=self.url,
            server_name="localhost",
            ca=p.ca_path,
            cert=p.cert_path,
            key=p.key_path,
            signing_key=p.identity,
            server_key=self.pki.server.identity.public_bytes(),
            **kw,  # type: ignore[arg-type]
        )
        self.clients.append(t)
        return t

    def raw(self, party: Party | None) -> httpx.Client:
        """A hostile client presenting ``party``'s certificate (or none)."""
        ctx = ssl.create_default_context(cafile=str(self.pki.server.ca_path))
        if party is not None:
            ctx.load_cert_chain(str(party.cert_path), str(party.key_path))
        client = httpx.Client(base_url=self.url, verify=ctx, timeout=10, trust_env=False)
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        self.transport.close()
        self.server.stop()

    def inbound(self) -> list[Envelope]:
        """Everything the server admitted so far (drains its queue)."""
        out = []
        while (env := self.transport.receive(timeout=0.05)) is not None:
            out.append(env)
        return out


def start(
    pki: Pki,
    *,
    listen: bool = True,
    max_body: int = 1 << 20,
    crl: Path | None = None,
    stack: tuple[type[Any], str] | None = None,
    **kw: object,
) -> Harness:
    """A server for ``pki``; with ``listen=False`` its port is bound but refuses connections."""
    transport = HttpsServerTransport(
        federation=FEDERATION,
        signing_key=pki.server.identity,
        site_keys={n: p.identity.public_bytes() for n, p in pki.sites.items()},
        peer_check=PeerCheck(
            ca=pki.server.ca_path, sites=pki.fingerprints(), crl=crl or pki.crl_path
        ),
        max_body=max_body,
        status_token=pki.status_token,
        **kw,  # type: ignore[arg-type]
    )
    ctx = server_context(cert=pki.server.cert_path, key=pki.server.key_path, ca=pki.server.ca_path)
    protocol, loop = stack if stack is not None else (PEER_CERT_PROTOCOL, LOOP)
    server = RunningServer(transport.app, ctx, protocol=protocol, loop=loop)
    return Harness(pki, transport, server.start() if listen else server)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.make(tmp_path)


@pytest.fixture
def serve() -> Iterator[Callable[..., Harness]]:
    """``serve(pki, **options)`` starts a server that stops by itself after the test."""
    running: list[Harness] = []

    def _serve(pki: Pki, **kw: object) -> Harness:
        h = start(pki, **kw)  # type: ignore[arg-type]
        running.append(h)
        return h

    yield _serve
    for h in running:
        h.stop()


@pytest.fixture
def fed(pki: Pki, serve: Callable[..., Harness]) -> Harness:
    return serve(pki)
