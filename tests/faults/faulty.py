"""A fault-injecting transport for tests: what a hostile or flaky network does to messages.

Test-only (nothing in ``securefl`` imports it). :class:`FaultyTransport`
wraps one party's :class:`~securefl.transport.base.Transport` (the memory
transport of an in-process federation) and applies :class:`Fault` rules to
what that party sends:

- ``duplicate``: the envelope goes out twice at once, as when an answer was
  lost after the message was delivered and the sender sent it again (the
  memory transport has no envelope ids, so the receiver sees the repeat
  itself: this is what the aggregators' idempotence is for);
- ``late``: the envelope goes out now and a copy goes out after this party
  next *receives* something, that is after the server moved on (a retry that
  straggles into the next stage or past the end of the round);
- ``swap``: the envelope is held back and goes out after this party's next
  send (reordering);
- ``changed``: the envelope goes out, then a copy with the same header and
  other payload bytes (a replayed message altered on the way, or a site
  trying to have a second version counted).

:class:`LoseResponses` does the HTTPS equivalent of ``duplicate`` one level
down: an ``httpx`` transport that lets a request reach the server, then
throws its answer away, so the site's client sends the same frame again.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from securefl.transport.base import Transport
from securefl.wire import Envelope

KINDS = ("duplicate", "late", "swap", "changed")


@dataclass
class Fault:
    """Apply ``kind`` to the envelopes ``match`` selects, at most ``times`` of them."""

    kind: str
    match: Callable[[Envelope], bool]
    times: int = 1
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r}")

    def take(self, env: Envelope) -> bool:
        if self.hits >= self.times or not self.match(env):
            return False
        self.hits += 1
        return True


def stage_from(stage: str, sender: str) -> Callable[[Envelope], bool]:
    """Selects the envelopes of ``stage`` sent by ``sender``."""
    return lambda env: env.stage == stage and env.sender == sender


def _changed(env: Envelope) -> Envelope:
    payload = bytearray(env.payload)
    if payload:
        payload[-1] ^= 0x01  # same length, other bytes
    else:
        payload = bytearray(b"\x00")
    return dataclasses.replace(env, payload=bytes(payload))


@dataclass
class FaultyTransport(Transport):
    """``inner`` with ``faults`` applied to what this party sends."""

    inner: Transport
    faults: list[Fault] = field(default_factory=list)
    sent: list[Envelope] = field(default_factory=list)
    _late: list[Envelope] = field(default_factory=list)
    _held: list[Envelope] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.name = self.inner.name

    def send(self, envelope: Envelope) -> None:
        kind = next((f.kind for f in self.faults if f.take(envelope)), None)
        with self._lock:
            held, self._held = self._held, []
        if kind == "swap":
            with self._lock:
                self._held.append(envelope)
            return
        out = [envelope]
        if kind == "duplicate":
            out.append(envelope)
        elif kind == "changed":
            out.append(_changed(envelope))
        elif kind == "late":
            with self._lock:
                self._late.append(envelope)
        for env in [*out, *held]:
            self._put(env)

    def receive(self, timeout: float | None = None) -> Envelope | None:
        got = self.inner.receive(timeout)
        if got is not None:
            with self._lock:
                late, self._late = self._late, []
            for env in late:  # the other side moved on: the straggling copy arrives now
                self._put(env)
        return got

    def flush(self) -> None:
        """Send whatever is still held or owed (the end of a party's run)."""
        with self._lock:
            pending, self._late, self._held = self._late + self._held, [], []
        for env in pending:
            self._put(env)

    def close(self) -> None:
        self.inner.close()

    def _put(self, env: Envelope) -> None:
        self.sent.append(env)
        self.inner.send(env)


class LoseResponses(httpx.BaseTransport):
    """Forward each request; lose the answer to the first attempt of each new body.

    The server did get the request (and answered it); the client sees a
    broken connection and retries with the same bytes, whose answer then
    arrives. At most ``times`` answers are lost.
    """

    def __init__(
        self, inner: httpx.BaseTransport, *, path: str = "/v1/send", times: int = 1000
    ) -> None:
        self.inner = inner
        self.path = path
        self.times = times
        self.lost: list[int] = []
        """Status codes of the answers thrown away."""
        self.retried: list[int] = []
        """Status codes of the answers to the retries that followed."""
        self._lost_bodies: set[bytes] = set()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path != self.path:
            return response
        response.read()
        body = request.read()
        if body in self._lost_bodies:
            self._lost_bodies.discard(body)
            self.retried.append(response.status_code)
            return response
        if len(self.lost) < self.times:
            self.lost.append(response.status_code)
            self._lost_bodies.add(body)
            response.close()
            raise httpx.ReadError("the answer was lost on the way back", request=request)
        return response

    def close(self) -> None:
        self.inner.close()
