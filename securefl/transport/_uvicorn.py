"""Running the HTTPS server: uvicorn in a thread (tests, simulate) or the foreground (CLI).

uvicorn is given our protocol (:data:`~securefl.transport._tls.PEER_CERT_PROTOCOL`,
so the app sees each peer certificate) and a ready TLS context; a socket
bound here first lets ``port=0`` pick a free port that the caller can read
before anything connects.

The stack: uvloop's event loop (libuv; its TLS plumbing compiled) and uvicorn's httptools
protocol (a C HTTP parser) where they are installed, as they are on Linux
by the package's dependencies; the asyncio loop and the pure-Python h11
protocol otherwise. Both serve the same app with the same peer checks;
the C stack costs the server less CPU per megabyte, most on uploads
(docs/transport.md, "Benchmark").
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import uvicorn

from securefl.errors import TransportError
from securefl.transport._files import load_signing_key
from securefl.transport._tls import PEER_CERT_PROTOCOL, PeerCheck, server_context
from securefl.transport.https_server import HttpsServerTransport

__all__ = ["LOOP", "RunningServer", "serve_files"]

#: uvicorn's event loop: uvloop where installed (a Linux dependency), else asyncio's
LOOP = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


class RunningServer:
    """uvicorn serving ``app`` with mutual TLS in a background thread.

    ``port=0`` picks a free port (see :attr:`port`). ``stop`` (or leaving the
    ``with`` block) shuts it down. :meth:`serve` runs in the foreground for
    ``securefl server``. ``protocol`` may be a subclass of
    :data:`PEER_CERT_PROTOCOL` (``bench/network.py`` counts bytes with one),
    ``loop`` another uvicorn loop name.
    """

    def __init__(
        self,
        app: Any,
        context: ssl.SSLContext,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        protocol: type[asyncio.Protocol] = PEER_CERT_PROTOCOL,
        loop: str = LOOP,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            http=protocol,
            loop=loop,
            ssl_context_factory=lambda _config, _default: context,
            lifespan="off",
            access_log=False,
            log_level=log_level,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def serve(self) -> None:
        """Serve in this thread until interrupted."""
        self._server.run(sockets=[self._sock])

    def start(self) -> RunningServer:
        self._thread = threading.Thread(target=self.serve, name="securefl-https", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise TransportError("the HTTPS server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_files(
    *,
    federation: str,
    ca: Path,
    cert: Path,
    key: Path,
    crl: Path | None,
    identity_key: Path,
    site_keys: Mapping[str, bytes],
    site_cert_sha256: Mapping[str, str],
    max_body: int,
    status_token: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
) -> tuple[HttpsServerTransport, RunningServer]:
    """The server transport and its (not yet started) uvicorn from a server kit's files.

    ``site_keys`` and ``site_cert_sha256`` come from the signed roster (the
    sites' Ed25519 identity keys and pinned certificate fingerprints).
    ``RunningServer.start()`` serves in a thread, ``serve()`` in the foreground.
    """
    token = Path(status_token).read_text(encoding="utf-8").strip() if status_token else None
    transport = HttpsServerTransport(
        federation=federation,
        signing_key=load_signing_key(identity_key),
        site_keys=site_keys,
        peer_check=PeerCheck(ca=ca, sites=site_cert_sha256, crl=crl),
        max_body=max_body,
        status_token=token or None,
    )
    context = server_context(cert=cert, key=key, ca=ca)
    return transport, RunningServer(
        transport.app, context, host=host, port=port, log_level=log_level
    )
