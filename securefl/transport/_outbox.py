"""A site's outbox on the server: what the driver sent it, until the site acknowledges."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Outbox"]


class Outbox:
    """One site's messages with sequence numbers from 1; ``after`` acknowledges.

    A message identical to one still unacknowledged (same header and payload)
    is not queued again: a site must not be able to make the server hold a
    copy of a large answer (an HE key bundle) per small request it repeats
    (``fed/hello``) while it never polls.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[int, bytes, bytes]] = []
        self._pending: set[bytes] = set()
        self._next = 1
        self._served = 0

    @property
    def delivered(self) -> bool:
        """Every message put so far was handed to the site at least once."""
        with self._lock:
            return self._served >= self._next - 1

    def put(self, key: bytes, make_frame: Callable[[], bytes]) -> bool:
        """Queue the frame for ``key`` unless that message is already waiting; True if queued."""
        with self._lock:
            if key in self._pending:
                return False
            self._items.append((self._next, key, make_frame()))
            self._pending.add(key)
            self._next += 1
            return True

    def after(self, seq: int) -> list[tuple[int, bytes]]:
        with self._lock:
            for s, key, _ in self._items:
                if s <= seq:
                    self._pending.discard(key)
            self._items = [item for item in self._items if item[0] > seq]
            self._served = max(self._served, seq)
            return [(s, f) for s, _, f in self._items]

    def served(self, seq: int) -> None:
        """Note that messages up to ``seq`` were sent in a response body."""
        with self._lock:
            self._served = max(self._served, seq)
