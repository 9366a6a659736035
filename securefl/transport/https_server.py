"""The server half of the HTTPS transport: a starlette app under uvicorn, mutual TLS.

:class:`HttpsServerTransport` is the :class:`Transport` that
:func:`securefl.runtime.run_server` drives; its :attr:`~HttpsServerTransport.app`
is what uvicorn serves (docs/transport.md describes the HTTP API):

- ``POST /v1/send``: one sealed envelope from a site. Every request first
  passes :class:`~securefl.transport._tls.PeerCheck` (pinned, unrevoked site
  leaf with clientAuth); the body limit is enforced before the body is read;
  the frame is decoded strictly, its ``sender`` must be the TLS name, its
  signature must verify under that site's roster key, its id must be new (or
  a byte-identical retry, answered 200 and not delivered again), and its
  round and stage must be the ones the driver is in. Only then does the
  envelope reach the driver.
- ``GET /v1/receive?after=SEQ&wait=S``: the site's outbox (messages the
  driver sent it, each sealed with the server's identity key), long-polled.
- ``GET /status`` (JSON) and ``GET /`` (HTML): roster certificates, or the
  bearer token.

Sites connect outbound only; the server never dials a site.

Envelope ids are remembered while a retry can still come, within a bound;
a site that stops polling is taken for gone when the driver next sends it
something (:mod:`securefl.transport._sites` says how and why).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import anyio.to_thread
import msgpack
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from securefl.errors import IntegrityError, TransportError, WireError
from securefl.hazmat.sign import SigningKey
from securefl.transport._gate import ENDED, driver_gate
from securefl.transport._outbox import Outbox
from securefl.transport._sites import Liveness, SeenIds
from securefl.transport._status import StatusBoard, status_html
from securefl.transport._tls import (
    PEER_CERT_KEY,
    PeerCheck,
    PeerRefused,
)
from securefl.transport.base import Transport
from securefl.transport.signed import (
    FRAME_OVERHEAD,
    ID_LEN,
    envelope_message,
    open_frame,
    read_frame,
    retry_digest,
    seal_parts,
)
from securefl.wire import SERVER, Envelope, EnvelopeHeader, bin_header

__all__ = [
    "LIVENESS",
    "MAX_IDS_PER_SITE",
    "MAX_WAIT",
    "RESTARTED_STATUS",
    "HttpsServerTransport",
    "RunningServer",
    "body_limit",
    "driver_gate",
    "receive_body",
]

log = logging.getLogger(__name__)

#: ``GET /v1/receive`` names a sequence number this server never issued: it restarted
RESTARTED_STATUS = 410

#: The longest a ``GET /v1/receive`` may hold the connection open.
MAX_WAIT = 30.0
#: Seconds without an open poll or any request after which a site is taken for gone.
LIVENESS = 2 * MAX_WAIT
#: Envelope ids remembered per site (oldest forgotten first); an honest site sends a few a round.
MAX_IDS_PER_SITE = 256
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


def receive_body(messages: Sequence[tuple[int, bytes | Sequence[bytes]]]) -> list[bytes]:
    """The ``/v1/receive`` body as parts whose concatenation is
    ``pack({"messages": [[seq, frame], ...]})``: the frames (whole, or as the
    parts of :func:`seal_parts`) are sent as they are, not copied into one
    buffer on the event loop."""
    packer = msgpack.Packer(use_bin_type=True)
    parts = [packer.pack_map_header(1) + packer.pack("messages")]
    parts[0] += packer.pack_array_header(len(messages))
    for seq, frame in messages:
        pieces = [frame] if isinstance(frame, bytes) else list(frame)
        size = sum(len(p) for p in pieces)
        parts.append(packer.pack_array_header(2) + packer.pack(seq) + bin_header(size))
        parts.extend(pieces)
    return parts


async def _stream(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


class _Retry(Exception):
    """The frame is a byte-identical retry of one already taken: acknowledged, not delivered."""


class _Refusal(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


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
        liveness: float = LIVENESS,
        max_ids_per_site: int = MAX_IDS_PER_SITE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if liveness <= 0 or max_ids_per_site < 1:
            raise TransportError("liveness must be positive and max_ids_per_site at least 1")
        self.name = SERVER
        self.federation = federation
        self._key = signing_key
        self._site_keys = dict(site_keys)
        self._check = peer_check
        self.max_body = max_body
        self._token = status_token
        self._gate = gate
        self._inbound: queue.Queue[Envelope] = queue.Queue()
        self._outboxes = {site: Outbox() for site in self._site_keys}
        self._seen = SeenIds(max_ids_per_site)
        self.liveness = Liveness(liveness, clock)
        self._decode_lock = threading.Lock()  # one large body decoded at a time
        self._hash_lock = threading.Lock()
        self._last_hash: tuple[bytes, bytes] = (b"", hashlib.sha256(b"").digest())
        #: each site's ``/v1/send`` being read or decoded (touched on the event loop only)
        self._reading: dict[str, asyncio.Task[Any]] = {}
        self._superseded: set[asyncio.Task[Any]] = set()
        self._admitting: set[str] = set()
        #: the newest ``/v1/receive`` of each site (event loop only); older waiting polls end
        self._polls: dict[str, int] = {}
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
        self._seen.round_started(envelope.round)
        digest = self._payload_hash(envelope.payload)
        key = hashlib.sha256(envelope_message(envelope, bytes(ID_LEN), digest)).digest()
        if outbox.put(key, lambda: seal_parts(envelope, self._key, payload_hash=digest)):
            self.status.sent(envelope)
        silent = self.liveness.silent_for(envelope.receiver)
        if silent is not None:  # queued all the same, in case it comes back
            raise TransportError(
                f"{envelope.receiver} has had no poll open for {silent:.0f} s (liveness "
                f"{self.liveness.interval:g} s): taken for gone until it says hello again"
            )

    def _payload_hash(self, payload: bytes) -> bytes:
        """SHA-256 of ``payload``, once per payload object the driver sends.

        A round start sends the same model object to every site: it is
        hashed once, not once per site. The cache holds the object itself
        (bytes never change), so an identity match is the same bytes.
        """
        with self._hash_lock:
            last, digest = self._last_hash
            if last is payload:
                return digest
        digest = hashlib.sha256(payload).digest()
        with self._hash_lock:
            self._last_hash = (payload, digest)
        return digest

    @property
    def seen_ids(self) -> int:
        """How many envelope ids the server remembers now (all sites)."""
        return len(self._seen)

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
        self.liveness.heard(site)
        return site

    async def _send_endpoint(self, request: Request) -> Response:
        site: str | None = None
        try:
            if self._closed:
                raise _Refusal(503, "the server is shutting down")
            site = self._peer(request)
            box = [await self._read_one_body(site, request)]
            self.bytes_received += len(box[0])
            self._admitting.add(site)
            try:
                status = await anyio.to_thread.run_sync(self._admit, site, box)
            finally:
                self._admitting.discard(site)
        except _Refusal as exc:
            self.status.refused(site, exc.status, exc.reason)
            return Response(exc.reason, status_code=exc.status, media_type="text/plain")
        return Response(status_code=status)

    async def _read_one_body(self, site: str, request: Request) -> bytearray:
        """Read ``site``'s body; a site has one body in flight, the newest.

        The buffer is sized from Content-Length, so a site announcing bodies on
        many connections and sending none must not get a buffer each: a newer
        body of the same site ends the read of the older one (503), which also
        frees a retry from an upload the network stalled without closing.
        While an earlier body is being decoded, the newer one is turned away
        (503; sites retry).
        """
        if site in self._admitting:
            raise _Refusal(503, "an earlier body of this site is being decoded; retry")
        me = asyncio.current_task()
        older = self._reading.get(site)
        if older is not None and older is not me:
            self._superseded.add(older)
            older.cancel()
        if me is not None:
            self._reading[site] = me
        try:
            return await self._read_body(request)
        except ClientDisconnect:
            raise _Refusal(400, "the client left before its body was read") from None
        except asyncio.CancelledError:
            if me is None or me not in self._superseded:
                raise  # the server is stopping
            me.uncancel()  # handled here: nothing after this should see a pending cancel
            raise _Refusal(503, "a newer body of this site replaced this one") from None
        finally:
            self._superseded.discard(me)
            if self._reading.get(site) is me:
                del self._reading[site]

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
        """Decode, deduplicate and authenticate one frame (in a worker thread).

        The payload is hashed once, right after the header is read and
        before anything is copied: that hash makes the retry digest
        (:func:`retry_digest`) and is what the signature is checked over.
        A retry is recognised before the round gate, so a retry that
        arrives after its stage moved on is still acknowledged.
        """
        with self._decode_lock:
            body = box.pop()
            try:
                frame = read_frame(body, max_bytes=self.max_body, digest=False)
            except WireError as exc:
                raise _Refusal(400, f"malformed envelope: {exc}") from None
            ended: list[EnvelopeHeader] = []
            hashed: list[bytes] = []

            def check(header: EnvelopeHeader) -> None:
                end = frame.envelope_at + len(frame.envelope_bytes)
                start = end - header.payload_size
                view = memoryview(body)
                hashed.append(hashlib.sha256(view[start:end]).digest())
                hashed.append(retry_digest(view, start, end, hashed[0]))
                seen = self._seen.digest(site, frame.id)
                if seen is not None:
                    if seen == hashed[1]:
                        raise _Retry
                    raise _Refusal(409, "envelope id already used with other bytes (replay)")
                if header.sender != site:
                    raise _Refusal(403, f"envelope sender {header.sender!r} is not the TLS name")
                if header.federation != self.federation or header.receiver != SERVER:
                    raise _Refusal(400, "envelope is not for this federation's server")
                reason = self._gate(header) if self._gate is not None else None
                if reason == ENDED:
                    ended.append(header)
                elif reason is not None:
                    raise _Refusal(409, reason)

            try:
                sealed = open_frame(
                    frame, keys=self._site_keys, check=check, payload_hash=lambda: hashed[0]
                )
            except _Retry:
                return 200
            except WireError as exc:
                raise _Refusal(400, f"malformed envelope: {exc}") from None
            except IntegrityError:
                raise _Refusal(401, "signature does not verify under the roster key") from None
            # under the decode lock: no concurrent retry slips between
            self._seen.add(site, sealed.id, hashed[1])
        if ended:  # signed by the site, of a round that is over: acknowledged, dropped
            log.info("dropped %s from %s: round %d has ended", ended[0].stage, site, ended[0].round)
            return 200
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
        if after > outbox.issued:
            # a sequence number this server never issued: it restarted since the site last
            # polled (its outboxes start afresh). Say so, so the site says hello again now
            # instead of waiting out a silence for a message that will never come.
            reason = f"no message {after} was ever sent here: the server restarted; say hello"
            self.status.refused(site, RESTARTED_STATUS, reason)
            return Response(reason, status_code=RESTARTED_STATUS, media_type="text/plain")
        # one waiting poll per site: a newer one ends the older (a client that lost its
        # connection polls again; a site opening many polls cannot keep many waiting)
        ticket = self._polls[site] = self._polls.get(site, 0) + 1
        outbox.wake()  # the older poll wakes, sees it is stale and answers 204
        if self._closed:
            messages = outbox.after(after)
        else:
            self.liveness.poll_opened(site)
            try:
                messages = await outbox.wait(
                    after, wait, current=lambda: self._polls[site] == ticket and not self._closed
                )
            finally:
                self.liveness.poll_closed(site)
        if not messages or self._polls[site] != ticket:
            return Response(status_code=204)
        if wait:  # the site may have been revoked while it waited: check again before handing out
            try:
                self._peer(request)
            except _Refusal as exc:
                self.status.refused(site, exc.status, exc.reason)
                return Response(exc.reason, status_code=exc.status, media_type="text/plain")
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


from securefl.transport._uvicorn import LOOP, RunningServer, serve_files  # noqa: E402  (re-exported)

__all__ += ["LOOP", "RunningServer", "serve_files"]
