"""A site's outbox on the server: what the driver sent it, until the site acknowledges."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

__all__ = ["Frame", "Outbox"]

#: a sealed frame as parts whose concatenation is the frame
Frame = tuple[bytes, ...]


class Outbox:
    """One site's messages with sequence numbers from 1; ``after`` acknowledges.

    A message identical to one still unacknowledged (same header and payload)
    is not queued again: a site must not be able to make the server hold a
    copy of a large answer (an HE key bundle) per small request it repeats
    (``fed/hello``) while it never polls.

    A frame is kept as the parts :func:`~securefl.transport.signed.seal_parts`
    returns, so one model sent to every site is one payload in memory.

    A long poll waits on an :class:`asyncio.Event` that :meth:`put` sets from
    the driver's thread, so a message leaves as soon as it is queued (no
    polling interval between the driver and the site).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[int, bytes, Frame]] = []
        self._pending: set[bytes] = set()
        self._next = 1
        self._served = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    @property
    def delivered(self) -> bool:
        """Every message put so far was handed to the site at least once."""
        with self._lock:
            return self._served >= self._next - 1

    @property
    def issued(self) -> int:
        """The highest sequence number this outbox has handed a message (0: none yet)."""
        with self._lock:
            return self._next - 1

    def put(self, key: bytes, make_frame: Callable[[], Frame]) -> bool:
        """Queue the frame for ``key`` unless that message is already waiting; True if queued."""
        with self._lock:
            if key in self._pending:
                return False
            self._items.append((self._next, key, make_frame()))
            self._pending.add(key)
            self._next += 1
        self.wake()
        return True

    def after(self, seq: int) -> list[tuple[int, Frame]]:
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

    def wake(self) -> None:
        """Wake every waiting long poll (a message arrived, a newer poll, or the server closes)."""
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that poll's event loop is already closed
                pass

    async def wait(
        self, seq: int, timeout: float, *, current: Callable[[], bool] = lambda: True
    ) -> list[tuple[int, Frame]]:
        """Messages after ``seq``, waiting up to ``timeout`` s for the first.

        Returns nothing once ``current()`` turns False (a newer poll of the
        same site took over). The event is cleared *before* the outbox is
        read, so a message queued in between still wakes this poll.
        """
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        waiter = (loop, event)
        with self._lock:
            self._waiters.add(waiter)
        deadline = loop.time() + timeout
        try:
            while True:
                event.clear()
                if not current():
                    return []
                messages = self.after(seq)
                remaining = deadline - loop.time()
                if messages or remaining <= 0:
                    return messages
                try:
                    await asyncio.wait_for(event.wait(), remaining)
                except TimeoutError:
                    pass
        finally:
            with self._lock:
                self._waiters.discard(waiter)
