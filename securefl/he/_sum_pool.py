"""Deserialize and add on both cores at the server: one helper process, public context only.

Why: the server's time is almost all TenSEAL deserialization (zstd and
protobuf), which holds the GIL, so threads do not help (docs/he.md). One
helper process owns the second half of every chunk list: it deserializes,
checks and adds those chunks into its own running sum, while this process
does the first half. The helper receives only ``public_context_bytes()`` and
loads it with :meth:`PublicContext.from_bytes`, which refuses any context
that could decrypt, so no secret key can reach it either.

Rejection stays all-or-nothing per site: both halves are loaded and checked
first (the helper keeps its half pending), and only if both are valid does
either side add anything. One helper only: its tasks then run in the order
they were submitted, which is what makes "commit" follow "load" without a
round trip.
"""

from __future__ import annotations

import multiprocessing
import os
import weakref
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from securefl.errors import WireError
from securefl.he._codec import ChunkSum, check_chunk_list, load_range
from securefl.he._context import PublicContext

__all__ = ["PooledSum", "SumPool"]

_STATE: dict[str, Any] = {}  # in the helper only: context, pending and sums by round token


def _init(public_context_bytes: bytes) -> None:
    _STATE["context"] = PublicContext.from_bytes(public_context_bytes)
    _STATE["pending"] = {}
    _STATE["sums"] = {}


def _ping() -> bool:
    return "context" in _STATE


def _load_task(token: str, chunks: list[bytes], lengths: list[int], first: int) -> str | None:
    try:
        _STATE["pending"][token] = load_range(_STATE["context"], chunks, lengths, first)
    except WireError as exc:
        return str(exc)
    return None


def _commit_task(token: str) -> None:
    sums: dict[str, ChunkSum] = _STATE["sums"]
    sums.setdefault(token, ChunkSum()).add(_STATE["pending"].pop(token))


def _discard_task(token: str) -> None:
    _STATE["pending"].pop(token, None)


def _serialize_task(token: str) -> list[bytes]:
    _STATE["pending"].pop(token, None)
    total = _STATE["sums"].pop(token, None)
    return [] if total is None else total.serialize()


def _shutdown(pool: ProcessPoolExecutor) -> None:
    pool.shutdown(wait=True, cancel_futures=True)


class SumPool:
    """The server's helper process (``spawn``: safe in a process that runs threads)."""

    def __init__(self, public_context_bytes: bytes) -> None:
        PublicContext.from_bytes(public_context_bytes)  # refuse a secret context here, too
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init,
            initargs=(public_context_bytes,),
        )
        self._finalizer = weakref.finalize(self, _shutdown, self._pool)

    def warm_up(self) -> None:
        """Start the helper now instead of on the first update."""
        self._pool.submit(_ping).result()

    def submit(self, fn: Any, *args: Any) -> Any:
        """Queue one task for the helper (tasks run in submission order)."""
        return self._pool.submit(fn, *args)

    def close(self) -> None:
        """Stop the helper process."""
        self._finalizer()


class PooledSum:
    """One round's running sum, split between this process and the helper."""

    def __init__(self, pool: SumPool, context: PublicContext, dimension: int) -> None:
        self._pool = pool
        self._context = context
        self._dimension = dimension
        self._token = os.urandom(16).hex()
        self._local = ChunkSum()
        self.count = 0

    def load(self, chunks: Any) -> list[Any]:
        """Check a site's whole chunk list; returns this process's half (helper keeps its own)."""
        lengths = check_chunk_list(self._context.preset, chunks, self._dimension)
        split = (len(lengths) + 1) // 2
        remote = self._pool.submit(_load_task, self._token, chunks[split:], lengths[split:], split)
        try:
            local = load_range(self._context, chunks[:split], lengths[:split], 0)
        except WireError:
            remote.result()
            self._pool.submit(_discard_task, self._token)
            raise
        error = remote.result()
        if error is not None:
            raise WireError(error)
        return local

    def add(self, local: list[Any]) -> None:
        """Add a site that :meth:`load` accepted, on both sides."""
        self._local.add(local)
        self._pool.submit(_commit_task, self._token)
        self.count += 1

    def serialize(self) -> list[bytes]:
        """The sum as serialized chunks, in order; ends this round's state in the helper."""
        remote = self._pool.submit(_serialize_task, self._token).result()
        return self._local.serialize() + list(remote)

    def drop(self) -> None:
        """Forget this round's state in the helper (aborted round)."""
        self._pool.submit(_serialize_task, self._token)
