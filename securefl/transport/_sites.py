"""What the HTTPS server remembers about each site: the envelope ids it took, when it last heard.

Envelope ids (:class:`SeenIds`) make a retry harmless: the same id with the
same frame bytes is acknowledged and not delivered again, the same id with
other bytes is a replay and refused. They are kept while they can still be
retried: for the round the server is in and the one before (older ones are
forgotten when the driver starts a round), and at most ``per_site`` per
site, oldest out first, so a site sending many ids (``fed/hello`` passes the
round gate at any time) cannot grow the table. A retry of a forgotten id is
no longer recognised by the transport; the round gate then refuses it (an
old round), or the aggregator takes it as the repeat it is (each mode
acknowledges a byte-identical repeat of a message and counts it once).

Liveness (:class:`Liveness`): a site waiting for the server always has a
long poll open, or opens the next one moments after the last answer. A site
that has had no poll open and made no request for ``interval`` seconds (by
default twice the longest poll wait) is taken for gone. The server only
asks when it has a message for the site, which it never has while the site
trains (every mode's first message comes from the site after training), so
a site training for longer than the interval is not mistaken for a dead one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["Liveness", "SeenIds"]


class SeenIds:
    """Envelope id -> (round it was taken in, SHA-256 of its frame), per site, bounded."""

    def __init__(self, per_site: int) -> None:
        self._per_site = per_site
        self._ids: dict[str, OrderedDict[bytes, tuple[int, bytes]]] = {}
        self._lock = threading.Lock()
        self._round = 0

    def __len__(self) -> int:
        with self._lock:
            return sum(len(ids) for ids in self._ids.values())

    def digest(self, site: str, envelope_id: bytes) -> bytes | None:
        """The frame digest ``site`` used ``envelope_id`` for, if it is remembered."""
        with self._lock:
            ids = self._ids.get(site)
            entry = None if ids is None else ids.get(envelope_id)
        return None if entry is None else entry[1]

    def add(self, site: str, envelope_id: bytes, digest: bytes) -> None:
        with self._lock:
            ids = self._ids.setdefault(site, OrderedDict())
            ids[envelope_id] = (self._round, digest)
            while len(ids) > self._per_site:
                ids.popitem(last=False)

    def round_started(self, round_number: int) -> None:
        """The driver sends in ``round_number``: forget ids taken before the round before it."""
        with self._lock:
            if round_number <= self._round:
                return
            self._round = round_number
            for site, ids in self._ids.items():
                self._ids[site] = OrderedDict(
                    (i, entry) for i, entry in ids.items() if entry[0] >= round_number - 1
                )


class Liveness:
    """When each site was last heard from, and how many of its polls wait now.

    Written from the server's event loop, read from the driver's thread
    (single dict operations, atomic in CPython).
    """

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self.interval = interval
        self._clock = clock
        self._heard: dict[str, float] = {}
        self._waiting: dict[str, int] = {}

    def heard(self, site: str) -> None:
        self._heard[site] = self._clock()

    def poll_opened(self, site: str) -> None:
        self._waiting[site] = self._waiting.get(site, 0) + 1
        self.heard(site)

    def poll_closed(self, site: str) -> None:
        self._waiting[site] = self._waiting.get(site, 1) - 1
        self.heard(site)

    def silent_for(self, site: str) -> float | None:
        """Seconds ``site`` has been silent if more than the interval, else ``None``.

        A site never heard from is not judged: it has not connected yet.
        """
        heard = self._heard.get(site)
        if heard is None or self._waiting.get(site, 0) > 0:
            return None
        silent = self._clock() - heard
        return silent if silent > self.interval else None
