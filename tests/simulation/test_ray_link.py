"""The server's link to the pools: a payload for many sites leaves the driver once.

No Ray is needed: the object store is replaced by a recorder of what is put.
"""

from __future__ import annotations

import os

import pytest

from securefl.errors import TransportError
from securefl.simulation.ray_link import SHARE_ABOVE, PoolLink
from securefl.wire import SERVER, Envelope


class _Store:
    def __init__(self) -> None:
        self.put_sizes: list[int] = []

    def put(self, value: bytes) -> object:
        self.put_sizes.append(len(value))
        return ("ref", len(self.put_sizes))


def _env(receiver: str, payload: bytes) -> Envelope:
    return Envelope(
        federation="f", round=1, stage="round-start", sender=SERVER, receiver=receiver,
        payload=payload,
    )  # fmt: skip


def test_a_model_sent_to_every_site_is_stored_once_and_passed_by_reference() -> None:
    sites = [f"s{i}" for i in range(6)]
    link = PoolLink([object(), object()], {s: i % 2 for i, s in enumerate(sites)})
    model = os.urandom(SHARE_ABOVE * 4)
    for s in sites:
        link.send(_env(s, model))
    link.send(_env("s0", b"small and private to s0"))
    store = _Store()
    batches = link._batches(store)
    assert store.put_sizes == [len(model)]  # once, not once per site or per pool
    refs = {
        payload for batch in batches for _, _, payload in batch if not isinstance(payload, bytes)
    }
    assert len(refs) == 1
    assert sum(len(b) for b in batches) == 7
    # each site's envelope is whole again on the far side: head + the shared payload
    head, receiver, _ = batches[0][0]
    assert Envelope.from_bytes(head + model) == _env(receiver, model)
    assert link.bytes_shared == len(model)


def test_a_payload_for_one_site_is_not_shared() -> None:
    link = PoolLink([object()], {"a": 0, "b": 0})
    link.send(_env("a", os.urandom(SHARE_ABOVE * 2)))
    link.send(_env("b", os.urandom(SHARE_ABOVE * 2)))
    store = _Store()
    batches = link._batches(store)
    assert store.put_sizes == [] and all(isinstance(p, bytes) for _, _, p in batches[0])


def test_the_server_cannot_reach_a_site_no_pool_hosts_or_that_left() -> None:
    link = PoolLink([object()], {"a": 0})
    with pytest.raises(TransportError):
        link.send(_env("stranger", b"x"))
    link._gone.add("a")
    with pytest.raises(TransportError):
        link.send(_env("a", b"x"))
