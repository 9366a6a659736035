"""The site half of the HTTPS transport: httpx with the site's client certificate.

A site only ever dials out: it posts its sealed envelopes to ``/v1/send``
and long-polls ``/v1/receive`` for the server's. It verifies the server's
certificate against the federation CA and the server name from its kit (not
whatever name the URL holds), and opens every message against the server's
identity key pinned in its roster, so it takes instructions only from its
federation's server. While the server is unreachable it retries with
exponential backoff and full jitter, re-sending the *same* frame (same
envelope id, so a request that did arrive is acknowledged, not doubled);
when the budget is spent it raises one clear :class:`TransportError`.
"""

from __future__ import annotations

import collections
import itertools
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpcore
import httpx

from securefl.errors import IntegrityError, TransportError, WireError
from securefl.hazmat.sign import SigningKey
from securefl.transport._tls import client_context, fingerprint
from securefl.transport.base import Transport
from securefl.transport.https_server import MAX_WAIT, RESTARTED_STATUS
from securefl.transport.signed import FRAME_OVERHEAD, open_sealed, seal
from securefl.wire import MAX_ENVELOPE_BYTES, SERVER, Envelope, Limits, scan, unpack

__all__ = ["HttpsSiteTransport", "RetryPolicy"]

log = logging.getLogger(__name__)
_RNG = random.SystemRandom()


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt k waits U(0, min(cap, base·2^k))."""

    attempts: int = 10
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        return _RNG.uniform(0.0, min(self.cap, self.base * 2.0**attempt))


class HttpsSiteTransport(Transport):
    """One site's endpoint: sends to the server, long-polls for the server's messages.

    ``server_cert_sha256`` is the server certificate the signed roster pins
    (``SignedRoster.cert_sha256("server")``); given it, a server presenting
    any other certificate, even one the federation CA issued for its name, is
    refused before a request is written. A site built from a kit passes it.
    """

    def __init__(
        self,
        *,
        name: str,
        server_url: str,
        server_name: str,
        ca: Path,
        cert: Path,
        key: Path,
        signing_key: SigningKey,
        server_key: bytes,
        retry: RetryPolicy = RetryPolicy(),
        max_message_bytes: int = MAX_ENVELOPE_BYTES + FRAME_OVERHEAD,
        sleep: Callable[[float], None] = time.sleep,
        server_cert_sha256: str | None = None,
    ) -> None:
        self.name = name
        self._server_name = server_name
        self._key = signing_key
        self._server_keys = {SERVER: server_key}
        self._retry = retry
        self._max = max_message_bytes
        self._sleep = sleep
        self._acked = 0
        self._buffer: collections.deque[Envelope] = collections.deque()
        self._closed = False
        context = client_context(ca=ca, cert=cert, key=key)
        self._client = httpx.Client(
            base_url=server_url.rstrip("/"),
            transport=_pinned_transport(context, server_cert_sha256),
            timeout=httpx.Timeout(30.0, read=MAX_WAIT + 30.0),
            trust_env=False,
        )

    # -- Transport --------------------------------------------------------------

    def send(self, envelope: Envelope) -> None:
        self._open()
        if envelope.sender != self.name:
            raise TransportError(f"{self.name!r} cannot send as {envelope.sender!r}")
        if envelope.receiver != SERVER:
            raise TransportError(f"a site sends only to the server, not to {envelope.receiver!r}")
        frame = seal(envelope, self._key)  # sealed once: every retry re-sends these bytes
        self.send_frame(frame, what=envelope.stage)

    def send_frame(self, frame: bytes, *, what: str = "envelope") -> None:
        """Post one sealed frame, retrying while the server is unreachable."""
        response = self._request(
            "POST",
            "/v1/send",
            content=frame,
            headers={"content-type": "application/octet-stream"},
            what=f"sending {what}",
        )
        if response.status_code not in (200, 202):
            raise TransportError(
                f"{self.name}: the server refused {what} ({response.status_code}: "
                f"{response.text[:200]})"
            )

    def receive(self, timeout: float | None = None) -> Envelope | None:
        self._open()
        if timeout is None:
            while not self._buffer:
                self._poll(MAX_WAIT)
        elif not self._buffer:
            deadline = time.monotonic() + timeout
            while True:
                self._poll(max(0.0, min(MAX_WAIT, deadline - time.monotonic())))
                if self._buffer or time.monotonic() >= deadline:
                    break
        return self._buffer.popleft() if self._buffer else None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()

    # -- plumbing ---------------------------------------------------------------

    def _open(self) -> None:
        if self._closed:
            raise TransportError(f"transport of {self.name!r} is closed")

    def _poll(self, wait: float) -> None:
        response = self._request(
            "GET",
            "/v1/receive",
            params={"after": self._acked, "wait": f"{wait:.3f}"},
            what="receiving",
        )
        if response.status_code == 204:
            return
        if response.status_code == RESTARTED_STATUS:
            # the server restarted and numbers its messages afresh: start over at 0, and
            # raise so the site's loop says hello again (a restarted server knows no one)
            self._acked = 0
            raise TransportError(f"{self.name}: the server restarted; saying hello again")
        if response.status_code != 200:
            raise TransportError(
                f"{self.name}: the server refused to deliver ({response.status_code}: "
                f"{response.text[:200]})"
            )
        try:
            messages = _messages(response.content, _poll_limits(self._max))
        except WireError:
            raise TransportError(f"{self.name}: the server sent a malformed receive body") from None
        for seq, frame in messages:
            if seq <= self._acked:
                continue
            self._acked = seq
            try:
                sealed = open_sealed(
                    frame, keys=self._server_keys, max_bytes=self._max, digest=False
                )
            except (WireError, IntegrityError) as exc:
                # not from our federation's server: dropped unread, like any stranger's message
                log.warning("%s: dropped a message that is not the server's (%s)", self.name, exc)
                continue
            if sealed.envelope.receiver != self.name:
                log.warning("%s: dropped a message for %r", self.name, sealed.envelope.receiver)
                continue
            self._buffer.append(sealed.envelope)

    def _request(self, method: str, path: str, *, what: str, **kwargs: Any) -> httpx.Response:
        """One request, retried with backoff on connection failures and 502/503/504."""
        last = ""
        for attempt in range(self._retry.attempts):
            if attempt:
                self._sleep(self._retry.delay(attempt - 1))
            try:
                response = self._client.request(
                    method, path, extensions={"sni_hostname": self._server_name}, **kwargs
                )
            except httpx.TransportError as exc:
                if _certificate_refused(exc):  # not our server: retrying cannot help
                    raise TransportError(
                        f"{self.name}: the server at {self._client.base_url} is not the "
                        f"federation's server: its certificate does not verify against the "
                        f"kit's CA for the name {self._server_name!r}"
                    ) from None
                last = f"{type(exc).__name__}: {exc}"
                log.info("%s: server unreachable while %s (%s); retrying", self.name, what, last)
                continue
            if response.status_code in (502, 503, 504):
                last = f"HTTP {response.status_code}"
                continue
            return response
        raise TransportError(
            f"{self.name}: the server at {self._client.base_url} was unreachable while {what} "
            f"after {self._retry.attempts} attempts ({last}); check the server and the network"
        )


class _PinnedBackend(httpcore.SyncBackend):
    """Connections whose TLS peer is the one certificate the roster pins, checked before use.

    The CA and the name are checked by OpenSSL; the pin (the roster's
    ``server.cert_sha256``) is checked right after the handshake, before a
    byte of any request is written, so a second certificate the CA issued for
    the server's name (a leftover, a mis-issue) never receives a site's upload.
    """

    def __init__(self, pin: str) -> None:
        super().__init__()
        self._pin = pin.lower()

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _PinnedStream(super().connect_tcp(*args, **kwargs), self._pin)


class _PinnedStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, pin: str) -> None:
        self._inner, self._pin = inner, pin

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(*args, **kwargs)
        ssl_object = tls.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(True) if ssl_object is not None else None
        if der is None or fingerprint(der) != self._pin:
            tls.close()
            raise _PinRefused("the server certificate is not the one the roster pins")
        return tls


class _PinRefused(httpcore.ConnectError):
    """The server's certificate verified but is not the pinned one (not worth a retry)."""


def _pinned_transport(context: ssl.SSLContext, pin: str | None) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(verify=context, trust_env=False)
    if pin is not None:
        transport._pool = httpcore.ConnectionPool(  # httpx takes no network backend itself
            ssl_context=context, network_backend=_PinnedBackend(pin)
        )
    return transport


def _certificate_refused(exc: BaseException) -> bool:
    """True if ``exc`` was caused by the server's certificate failing verification."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, (ssl.SSLCertVerificationError, _PinRefused)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _messages(body: bytes, limits: Limits) -> list[tuple[int, memoryview]]:
    """``(seq, frame)`` from a ``/v1/receive`` body, the frames as views into ``body``.

    The body (``{"messages": [[seq, frame], ...]}``) is walked by
    :func:`securefl.wire.scan` under ``limits`` before anything is read, as
    :func:`securefl.wire.unpack` would; the frames are not copied out (their
    payloads are, once, when each frame is opened).
    """
    if len(body) > limits.max_bytes:
        raise WireError(f"receive body of {len(body)} bytes exceeds the limit")
    view = memoryview(body)
    top = scan(body, limits)  # the whole body within limits, before anything is read
    if body[:1] != b"\x81" or unpack(bytes(view[top[0] : top[1]])) != "messages":
        raise WireError("bad receive body")
    array = view[top[1] :]
    if not (0x90 <= array[0] <= 0x9F or array[0] in (0xDC, 0xDD)):
        raise WireError("bad receive body")
    starts = [*scan(cast(bytes, array), limits), len(array)]  # scan indexes and slices
    out: list[tuple[int, memoryview]] = []
    for at, end in itertools.pairwise(starts):
        item = array[at:end]
        if item[0] != 0x92:  # [seq, frame]
            raise WireError("bad receive item")
        seq_at, frame_at = scan(cast(bytes, item), limits)
        seq = unpack(bytes(item[seq_at:frame_at]))
        width = _BIN_WIDTH.get(item[frame_at])
        if type(seq) is not int or width is None:
            raise WireError("bad receive item")
        out.append((seq, item[frame_at + 1 + width :]))
    return out


_BIN_WIDTH = {0xC4: 1, 0xC5: 2, 0xC6: 4}


def _poll_limits(max_message: int) -> Limits:
    return Limits(
        max_bytes=64 * max_message,
        max_items=4 * 4096 + 2,
        max_depth=3,
        max_array_len=4096,
        max_map_len=1,
        max_str_len=16,
        max_bin_len=max_message,
    )
