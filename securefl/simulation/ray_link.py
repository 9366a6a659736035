"""The server's transport to the site pools of ``simulate --backend ray``.

The server runs the same sans-IO :class:`~securefl.runtime.server.ServerDriver`
and the same I/O loop (:func:`securefl.runtime.loop.run_server`) as an
in-process run; only this transport differs. It batches what the driver
sends and moves it to each pool in one Ray call, which returns what that
pool's sites sent meanwhile (:meth:`SitePool.exchange
<securefl.simulation.ray_pool.SitePool.exchange>`). A payload of many
envelopes (the global model each round start carries) is put into Ray's
object store once and passed by reference, so it leaves the driver once, not
once per site. It also answers the two questions the loop asks a
simulation: is every party idle (``quiescent``, so that a rehearsed dropout
costs no stage timeout), and is any site still running (``keep_running``).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

from securefl.errors import TransportError
from securefl.simulation.ray_pool import Inbound, PoolStatus
from securefl.transport.base import Transport
from securefl.wire import SERVER, Envelope

__all__ = ["PoolLink"]

#: Payloads at least this large are shared through the object store when sent more than once.
SHARE_ABOVE = 16 * 1024


class PoolLink(Transport):
    """The server's endpoint: envelopes to and from the pools (Ray actor handles)."""

    name = SERVER

    def __init__(self, pools: Sequence[Any], placement: Mapping[str, int]) -> None:
        self._pools = list(pools)
        self._where = dict(placement)
        self._outbox: list[list[Envelope]] = [[] for _ in self._pools]
        self._inbox: collections.deque[bytes] = collections.deque()
        self._status: list[PoolStatus | None] = [None] * len(self._pools)
        self._gone: set[str] = set()
        #: bytes the server sent to each site, and received from it (envelopes as encoded)
        self.bytes_to: collections.Counter[str] = collections.Counter()
        self.bytes_from: collections.Counter[str] = collections.Counter()
        #: payload bytes the driver put into the object store (each shared payload once)
        self.bytes_shared = 0

    def send(self, envelope: Envelope) -> None:
        if envelope.sender != SERVER:
            raise TransportError(f"the server cannot send as {envelope.sender!r}")
        index = self._where.get(envelope.receiver)
        if index is None or envelope.receiver in self._gone:
            raise TransportError(f"site {envelope.receiver!r} is not connected")
        self._outbox[index].append(envelope)
        self.bytes_to[envelope.receiver] += len(envelope.head()) + len(envelope.payload)

    def receive(self, timeout: float | None = None) -> Envelope | None:
        if not self._inbox:
            self.flush(wait=0.05 if timeout is None else timeout)
        if not self._inbox:
            return None
        data = self._inbox.popleft()
        envelope = Envelope.from_bytes(data)
        self.bytes_from[envelope.sender] += len(data)
        return envelope

    def flush(self, wait: float = 0.0) -> None:
        """Deliver everything the server sent and collect what the sites sent."""
        import ray

        batches = self._batches(ray)
        calls = [
            pool.exchange.remote(batch, wait)
            for pool, batch in zip(self._pools, batches, strict=True)
        ]
        for index, (out, status) in enumerate(ray.get(calls)):
            self._inbox.extend(out)
            self._status[index] = status
            self._gone.update(status.gone)

    def _batches(self, ray: Any) -> list[list[Inbound]]:
        """Each pool's envelopes; a large payload sent to several sites is stored once."""
        counts = collections.Counter(
            env.payload for box in self._outbox for env in box if len(env.payload) >= SHARE_ABOVE
        )
        shared: dict[bytes, Any] = {}
        for payload, count in counts.items():
            if count > 1:
                shared[payload] = ray.put(payload)
                self.bytes_shared += len(payload)
        batches: list[list[Inbound]] = []
        for box in self._outbox:
            batches.append(
                [
                    (
                        env.head(),
                        env.receiver,
                        shared.get(env.payload, env.payload)
                        if len(env.payload) >= SHARE_ABOVE
                        else env.payload,
                    )
                    for env in box
                ]
            )
        self._outbox = [[] for _ in self._pools]
        return batches

    def quiescent(self) -> bool:
        """Nothing in flight and every pool's live sites wait: only a deadline moves on."""
        if self._inbox or any(self._outbox):
            return False
        self.flush(wait=0.0)
        return not self._inbox and all(s is not None and s.quiescent for s in self._status)

    def keep_running(self) -> bool:
        """False once a site failed, or no site's loop runs any more."""
        if self.failure is not None:
            return False
        return any(s is None or s.alive > 0 for s in self._status)

    @property
    def failure(self) -> tuple[str, str] | None:
        """``(site, error)`` of the first unexpected site error any pool reported."""
        return next((s.failure for s in self._status if s is not None and s.failure), None)
