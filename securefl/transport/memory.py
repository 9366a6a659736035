"""In-process transport: one queue per party, envelopes as bytes.

Used by ``securefl simulate`` (each site runs in its own thread) and by the
tests. ``tap`` lets a test record every byte a party receives, which is how
we show that the server never sees a single site's update in the clear.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from securefl.errors import TransportError
from securefl.transport.base import Transport
from securefl.wire import Envelope

__all__ = ["MemoryHub", "MemoryTransport"]


class MemoryHub:
    """Routes envelopes between the parties registered on it."""

    def __init__(self) -> None:
        self._queues: dict[str, queue.Queue[bytes]] = {}
        self._lock = threading.Lock()
        self._taps: dict[str, list[Callable[[bytes], None]]] = {}
        self._waiting: set[str] = set()

    def connect(self, name: str) -> MemoryTransport:
        """A transport endpoint for party ``name`` (each name once)."""
        with self._lock:
            if name in self._queues:
                raise TransportError(f"party {name!r} is already connected")
            self._queues[name] = queue.Queue()
        return MemoryTransport(self, name)

    def disconnect(self, name: str) -> None:
        """Forget a party; messages to it then fail as they would on a network."""
        with self._lock:
            self._queues.pop(name, None)

    def tap(self, name: str, callback: Callable[[bytes], None]) -> None:
        """Call ``callback`` with the raw bytes of every envelope delivered to ``name``."""
        with self._lock:
            self._taps.setdefault(name, []).append(callback)

    def deliver(self, data: bytes, receiver: str) -> None:
        with self._lock:
            q = self._queues.get(receiver)
            taps = list(self._taps.get(receiver, ()))
        if q is None:
            raise TransportError(f"no party {receiver!r} is connected")
        for callback in taps:
            callback(data)
        with self._lock:
            # the receiver is busy from now on, before it even wakes up, so that
            # quiescent() can never see it "waiting" with a message in hand
            self._waiting.discard(receiver)
            q.put(data)

    def take(self, name: str, timeout: float | None) -> bytes | None:
        with self._lock:
            q = self._queues.get(name)
            if q is None:
                raise TransportError(f"party {name!r} is not connected")
            self._waiting.add(name)
        try:
            return q.get(timeout=timeout)
        except queue.Empty:
            return None
        finally:
            with self._lock:
                self._waiting.discard(name)

    def quiescent(self, observer: str) -> bool:
        """True when nothing can happen any more without a deadline.

        Every connected party except ``observer`` is blocked waiting for a
        message and no message is queued anywhere. A simulation uses this to
        declare a stage's deadline at once instead of waiting out a clock.
        """
        with self._lock:
            others = set(self._queues) - {observer}
            queued = any(not q.empty() for q in self._queues.values())
            return not queued and others <= self._waiting


class MemoryTransport(Transport):
    """A party's endpoint on a :class:`MemoryHub`."""

    def __init__(self, hub: MemoryHub, name: str) -> None:
        self._hub = hub
        self.name = name
        self._closed = False

    def send(self, envelope: Envelope) -> None:
        if self._closed:
            raise TransportError(f"transport of {self.name!r} is closed")
        if envelope.sender != self.name:
            raise TransportError(f"{self.name!r} cannot send as {envelope.sender!r}")
        self._hub.deliver(envelope.to_bytes(), envelope.receiver)

    def receive(self, timeout: float | None = None) -> Envelope | None:
        if self._closed:
            raise TransportError(f"transport of {self.name!r} is closed")
        data = self._hub.take(self.name, timeout)
        return None if data is None else Envelope.from_bytes(data)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub.disconnect(self.name)
