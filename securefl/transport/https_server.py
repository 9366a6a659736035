"""The server half of the HTTPS transport: a starlette app under uvicorn, mutual TLS.

:class:`HttpsServerTransport` is the :class:`Transport` that
:func:`securefl.runtime.run_server` drives; its :attr:`~HttpsServerTransport.app`
is what uvicorn serves (docs/transport.md describes the HTTP API):

- ``POST /v1/send``: one sealed envelope from a site. Every request first
  passes :class:`~securefl.transport._tls.PeerCheck` (pinned, unrevoked site
  leaf with clientAuth); the body limit is enforced before the body is read;
  the frame is decoded strictly, its ``sender`` must be the TLS name, its
  signature must verify under that site's roster key, its id must be new (or
  a byte-identical retry), and its round and stage must be the ones the
  driver is in. Only then does the envelope reach the driver.
- ``GET /v1/receive?after=SEQ&wait=S``: the site's outbox (messages the
  driver sent it, each sealed with the server's identity key), long-polled.
- ``GET /status`` (JSON) and ``GET /`` (HTML): roster certificates, or the
  bearer token.

Sites connect outbound only; the server never dials a site.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import queue
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import anyio.to_thread
import msgpack
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from securefl.errors import IntegrityError, TransportError, WireError
from securefl.hazmat.sign import SigningKey
from securefl.transport._status import BYE, HELLO, REPORT, StatusBoard, status_html
from securefl.transport._tls import (
    PEER_CERT_KEY,
    PeerCheck,
    PeerRefused,
)
from securefl.transport.base import Transport
from securefl.transport.signed import FRAME_OVERHEAD, open_frame, read_frame, seal
from securefl.wire import SERVER, Envelope, EnvelopeHeader, bin_header

__all__ = [
    "MAX_WAIT",
    "HttpsServerTransport",
    "RunningServer",
    "body_limit",
    "driver_gate",
    "receive_body",
]

#: The longest a ``GET /v1/receive`` may hold the connection open.
MAX_WAIT = 30.0
#: Bytes per model value a site's largest message may carry, by mode (he: pass your own).
BYTES_PER_VALUE = {"plain": 4.0, "mask": 4.0}


def body_limit(
    *,
    dimension: int,
    mode: str = "mask",
    bytes_per_value: float | None = None,
    overhead: int = 1 << 20,
) -> int:
    """The largest ``POST /v1/send`` body a site may need for a model of ``dimension`` values.

    ``plain`` sends float32 and ``mask`` at most 4-byte ring values (with the
    weight, ``dimension + 1`` values); for ``he`` pass ``bytes_per_value``
    (ciphertext bytes per slot of the preset). ``overhead`` covers the
    envelope, the frame and a mode's small fields.
    """
    per = bytes_per_value if bytes_per_value is not None else BYTES_PER_VALUE.get(mode)
    if per is None:
        raise TransportError(f"body_limit: give bytes_per_value for mode {mode!r}")
    return int((dimension + 1) * per) + overhead + FRAME_OVERHEAD


def receive_body(messages: list[tuple[int, bytes]]) -> list[bytes]:
    """The ``/v1/receive`` body as parts whose concatenation is
    ``pack({"messages": [[seq, frame], ...]})``: the frames are sent as they
    are, not copied into one buffer on the event loop."""
    packer = msgpack.Packer(use_bin_type=True)
    parts = [packer.pack_map_header(1) + packer.pack("messages")]
    parts[0] += packer.pack_array_header(len(messages))
    for seq, frame in messages:
        parts.append(packer.pack_array_header(2) + packer.pack(seq) + bin_header(len(frame)))
        parts.append(frame)
    return parts


async def _stream(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


class _Driver(Protocol):
    @property
    def stage(self) -> Any: ...
    @property
    def current_round(self) -> int: ...
    @property
    def aggregator_stage(self) -> str: ...


def driver_gate(
    driver: _Driver, *, anytime: tuple[str, ...] = (HELLO, BYE)
) -> Callable[[EnvelopeHeader], str | None]:
    """Refuse (409) envelopes for a round or protocol stage the driver is not in.

    Stages in ``anytime`` (``fed/hello``, ``fed/bye``) come at any time.
    Everything else must carry the round the driver has open; while a
    ``mask/...`` stage runs, only that stage (besides the site's
    ``fed/report``) is taken, so a late or replayed message of an earlier
    stage is refused before it is decoded. Other modes' stages are left to
    their aggregator, which refuses what it does not expect. The driver is
    read from another thread: a message that passes just before the stage
    moves is refused by the driver itself.
    """

    def gate(header: EnvelopeHeader) -> str | None:
        if header.stage in anytime:
            return None
        if getattr(driver.stage, "value", driver.stage) != "round open":
            return "no round is open"
        if header.round != driver.current_round:
            return f"round {header.round} is not the open round {driver.current_round}"
        stage = driver.aggregator_stage
        if stage.startswith("mask/") and header.stage not in (REPORT, stage):
            return f"stage {header.stage!r} is not the current stage {stage!r}"
        return None

    return gate


class _Refusal(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Outbox:
    """One site's messages with sequence numbers from 1; ``after`` acknowledges.

    A long poll waits on an :class:`asyncio.Event` that :meth:`put` sets from
    the driver's thread, so a message leaves as soon as it is queued (no
    polling interval between the driver and the site).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[int, bytes]] = []
        self._next = 1
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._served = 0

    @property
    def delivered(self) -> bool:
        """Every message put so far was handed to the site at least once."""
        with self._lock:
            return self._served >= self._next - 1

    def put(self, frame: bytes) -> None:
        with self._lock:
            self._items.append((self._next, frame))
            self._next += 1
        self.wake()

    def wake(self) -> None:
        """Wake every waiting long poll (a message arrived, or the server closes)."""
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that poll's event loop is already closed
                pass

    def after(self, seq: int) -> list[tuple[int, bytes]]:
        with self._lock:
            self._items = [(s, f) for s, f in self._items if s > seq]
            self._served = max(self._served, seq)
            return list(self._items)

    async def wait(self, seq: int, timeout: float) -> list[tuple[int, bytes]]:
        """Messages after ``seq``, waiting up to ``timeout`` seconds for the first."""
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiters.add(waiter)
        try:
            messages = self.after(seq)
            if not messages and timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout)
                messages = self.after(seq)
            return messages
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def served(self, seq: int) -> None:
        """Note that messages up to ``seq`` were sent in a response body."""
        with self._lock:
            self._served = max(self._served, seq)


class HttpsServerTransport(Transport):
    """The server's endpoint: envelopes in from ``/v1/send``, out through per-site outboxes."""

    def __init__(
        self,
        *,
        federation: str,
        signing_key: SigningKey,
        site_keys: Mapping[str, bytes],
        peer_check: PeerCheck,
        max_body: int,
        status_token: str | None = None,
        gate: Callable[[EnvelopeHeader], str | None] | None = None,
    ) -> None:
        self.name = SERVER
        self.federation = federation
        self._key = signing_key
        self._site_keys = dict(site_keys)
        self._check = peer_check
        self.max_body = max_body
        self._token = status_token
        self._gate = gate
        self._inbound: queue.Queue[Envelope] = queue.Queue()
        self._outboxes = {site: _Outbox() for site in self._site_keys}
        self._seen: dict[tuple[str, bytes], bytes] = {}
        self._seen_lock = threading.Lock()
        self._decode_lock = threading.Lock()  # one large body decoded at a time
        self._closed = False
        #: request body bytes read by ``/v1/send`` (what the memory bound is measured against)
        self.bytes_received = 0
        self.status = StatusBoard(federation, tuple(sorted(self._site_keys)))
        self.app = Starlette(
            routes=[
                Route("/v1/send", self._send_endpoint, methods=["POST"]),
                Route("/v1/receive", self._receive_endpoint, methods=["GET"]),
                Route("/status", self._status_endpoint, methods=["GET"]),
                Route("/", self._page_endpoint, methods=["GET"]),
            ]
        )

    def set_gate(self, gate: Callable[[EnvelopeHeader], str | None] | None) -> None:
        """Say which rounds and stages are open (see :func:`driver_gate`)."""
        self._gate = gate

    # -- Transport --------------------------------------------------------------

    def send(self, envelope: Envelope) -> None:
        if self._closed:
            raise TransportError("the server transport is closed")
        if envelope.sender != SERVER:
            raise TransportError(f"the server cannot send as {envelope.sender!r}")
        outbox = self._outboxes.get(envelope.receiver)
        if outbox is None:
            raise TransportError(f"{envelope.receiver!r} is not a site on the roster")
        outbox.put(seal(envelope, self._key))
        self.status.sent(envelope)

    def receive(self, timeout: float | None = None) -> Envelope | None:
        if self._closed:
            raise TransportError("the server transport is closed")
        try:
            return self._inbound.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._closed = True
        for outbox in self._outboxes.values():  # pending long polls answer now
            outbox.wake()

    def delivered(self, site: str) -> bool:
        """Whether every message for ``site`` went out in a response at least once.

        ``securefl server`` waits for this (within a grace period) after the
        last round, so each site can fetch its final message before the
        server stops.
        """
        outbox = self._outboxes.get(site)
        return outbox is None or outbox.delivered

    # -- HTTP -------------------------------------------------------------------

    def _peer(self, request: Request) -> str:
        der = request.scope.get("extensions", {}).get("tls", {}).get(PEER_CERT_KEY)
        try:
            site = self._check.check(der)
        except PeerRefused as exc:
            raise _Refusal(403, str(exc)) from None
        self.status.seen(site)
        return site

    async def _send_endpoint(self, request: Request) -> Response:
        site: str | None = None
        try:
            if self._closed:
                raise _Refusal(503, "the server is shutting down")
            site = self._peer(request)
            try:
                box = [await self._read_body(request)]
            except ClientDisconnect:
                raise _Refusal(400, "the client left before its body was read") from None
            self.bytes_received += len(box[0])
            status = await anyio.to_thread.run_sync(self._admit, site, box)
        except _Refusal as exc:
            self.status.refused(site, exc.status, exc.reason)
            return Response(exc.reason, status_code=exc.status, media_type="text/plain")
        return Response(status_code=status)

    async def _read_body(self, request: Request) -> bytearray:
        """The body, refused (413) before reading when too large, counted when chunked."""
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise _Refusal(400, "bad Content-Length")
            size = int(declared)
            if size > self.max_body:
                raise _Refusal(413, f"body of {size} bytes exceeds the limit of {self.max_body}")
            body = bytearray(size)
            view, at = memoryview(body), 0
            async for chunk in request.stream():
                if at + len(chunk) > size:
                    raise _Refusal(400, "body longer than its Content-Length")
                view[at : at + len(chunk)] = chunk
                at += len(chunk)
            view.release()
            if at != size:
                raise _Refusal(400, "body shorter than its Content-Length")
            return body
        body = bytearray()
        async for chunk in request.stream():
            if len(body) + len(chunk) > self.max_body:
                raise _Refusal(413, f"body exceeds the limit of {self.max_body}")
            body += chunk
        return body

    def _admit(self, site: str, box: list[bytearray]) -> int:
        """Decode, authenticate and deduplicate one frame (in a worker thread)."""
        with self._decode_lock:
            try:
                frame = read_frame(box.pop(), max_bytes=self.max_body)
            except WireError as exc:
                raise _Refusal(400, f"malformed envelope: {exc}") from None
            with self._seen_lock:
                seen = self._seen.get((site, frame.id))
            if seen is not None:
                if seen == frame.digest:
                    return 200
                raise _Refusal(409, "envelope id already used with other bytes (replay)")

            def check(header: EnvelopeHeader) -> None:
                if header.sender != site:
                    raise _Refusal(403, f"envelope sender {header.sender!r} is not the TLS name")
                if header.federation != self.federation or header.receiver != SERVER:
                    raise _Refusal(400, "envelope is not for this federation's server")
                reason = self._gate(header) if self._gate is not None else None
                if reason is not None:
                    raise _Refusal(409, reason)

            try:
                sealed = open_frame(frame, keys=self._site_keys, check=check)
            except WireError as exc:
                raise _Refusal(400, f"malformed envelope: {exc}") from None
            except IntegrityError:
                raise _Refusal(401, "signature does not verify under the roster key") from None
            with self._seen_lock:  # under the decode lock: no concurrent retry slips between
                self._seen[(site, frame.id)] = frame.digest
        self.status.admitted(sealed.envelope)
        self._inbound.put(sealed.envelope)
        return 202

    async def _receive_endpoint(self, request: Request) -> Response:
        site: str | None = None
        try:
            site = self._peer(request)
            try:
                after = int(request.query_params.get("after", "0"))
                wait = float(request.query_params.get("wait", "0"))
            except ValueError:
                raise _Refusal(400, "after must be an integer and wait a number") from None
            if after < 0 or not 0 <= wait <= MAX_WAIT:
                raise _Refusal(400, f"after must be >= 0 and wait in [0, {MAX_WAIT:g}]")
        except _Refusal as exc:
            self.status.refused(site, exc.status, exc.reason)
            return Response(exc.reason, status_code=exc.status, media_type="text/plain")
        outbox = self._outboxes[site]
        messages = outbox.after(after) if self._closed else await outbox.wait(after, wait)
        if not messages:
            return Response(status_code=204)
        parts = receive_body(messages)
        outbox.served(messages[-1][0])
        return StreamingResponse(
            _stream(parts),
            media_type="application/octet-stream",
            headers={"content-length": str(sum(len(p) for p in parts))},
        )

    def _may_see_status(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        if self._token and auth.startswith("Bearer "):
            if hmac.compare_digest(auth[7:].encode(), self._token.encode()):
                return True
        try:
            self._peer(request)
        except _Refusal:
            return False
        return True

    async def _status_endpoint(self, request: Request) -> Response:
        if not self._may_see_status(request):
            self.status.refused(None, 403, "status asked without a roster certificate or token")
            return Response("forbidden", status_code=403, media_type="text/plain")
        return JSONResponse(self.status.snapshot())

    async def _page_endpoint(self, request: Request) -> Response:
        if not self._may_see_status(request):
            self.status.refused(None, 403, "status asked without a roster certificate or token")
            return Response("forbidden", status_code=403, media_type="text/plain")
        return HTMLResponse(status_html(self.status.snapshot()))


from securefl.transport._uvicorn import RunningServer, serve_files  # noqa: E402  (re-exported)

__all__ += ["RunningServer", "serve_files"]
