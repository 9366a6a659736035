"""Reading a running server's ``GET /status`` with a kit's credentials.

Why through a kit: status is for roster members only. A site kit presents its
client certificate, and the server must chain to the kit's CA under the kit's
server name, so the answer comes from the federation's server and nobody
else. The server kit cannot ask: its certificate is for serving (no
clientAuth), and the TLS handshake requires a client certificate before any
bearer token is read; the coordinator reads its own status in its logs or
with a site's kit. Nothing here imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from securefl.errors import ConfigError, TransportError
from securefl.provision.kit import Kit
from securefl.reports.roster import SERVER_ENTRY
from securefl.transport._tls import client_context
from securefl.transport.https_client import _pinned_transport

__all__ = ["fetch_status"]

#: Longest a status answer may be (the roster's sites, a few fields each).
MAX_STATUS_BYTES = 1 << 20


def fetch_status(kit_path: str | Path, url: str | None = None, *, timeout: float = 10.0) -> Any:
    """The server's status (JSON) as the kit's party sees it; ``url`` defaults to the kit's."""
    kit = Kit.load(kit_path)
    base = (url or kit.server_url).rstrip("/")
    if not base.startswith("https://"):
        raise ConfigError(f"status URL {base!r}: the server speaks only https://")
    if kit.kind != "site":
        raise ConfigError(
            f"kit {kit.path}: status needs a site kit (the server asks every client for a "
            "site certificate; the server kit's certificate is for serving only)"
        )
    verify = client_context(ca=kit.ca_cert_path, cert=kit.cert_path, key=kit.key_path)
    # the roster pins the server's certificate, as for `securefl client`: another one the
    # CA issued for the server's name (a leaked or misused CA key) is not the server
    pinned = _pinned_transport(verify, kit.roster.cert_sha256(SERVER_ENTRY))
    try:
        with (
            httpx.Client(transport=pinned, timeout=timeout, trust_env=False) as client,
            client.stream(
                "GET", f"{base}/status", extensions={"sni_hostname": kit.server_name}
            ) as response,
        ):
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_STATUS_BYTES:
                    raise TransportError(f"status from {base}: the answer is too large")
    except httpx.HTTPError as exc:
        raise TransportError(f"status from {base}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise TransportError(
            f"status from {base}: the server answered {response.status_code} "
            f"({body[:200].decode('utf-8', 'replace')})"
        )
    try:
        return json.loads(body)
    except ValueError:
        raise TransportError(f"status from {base}: the answer is not JSON") from None
