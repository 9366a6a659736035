"""The encryption pool's helpers: spawned (never forked), as many as asked, gone after close.

Each helper holds a copy of the site's secret key. The module's argument for
letting the key cross a pipe is that it goes only to ``helpers`` child
processes started with ``spawn`` (a fork would copy the whole parent, and can
deadlock in a threaded one) and that those processes end when the pool is
closed. Each of those is checked here from the processes themselves, and CKKS
encryption through the pool's C++ constructors is checked end to end.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import SpawnProcess

import numpy as np

from securefl.he import SecretContext
from securefl.he._codec import decrypt_chunks, encrypt_chunks
from securefl.he._pool import EncryptPool, encrypt_range


def _children() -> dict[int | None, multiprocessing.process.BaseProcess]:
    return {p.pid: p for p in multiprocessing.active_children()}


def test_helpers_are_spawned_as_many_as_asked_and_end_on_close(bfv_secret: SecretContext) -> None:
    before = _children()
    pool = EncryptPool(bfv_secret, helpers=1)
    try:
        pool.warm_up()
        helpers = [p for pid, p in _children().items() if pid not in before]
        assert len(helpers) == 1
        assert all(isinstance(p, SpawnProcess) for p in helpers)
        # the executor may never start more processes than helpers (each would hold the key)
        assert pool._pool._max_workers == 1  # type: ignore[attr-defined]
    finally:
        pool.close()
    # close() returns once the helpers (and their copies of the key) are gone
    assert not any(p.is_alive() for p in helpers)
    assert not set(_children()) - set(before)


def test_ckks_chunks_encrypted_by_the_cpp_constructor_decrypt_to_the_input(
    ckks_kit: object,
) -> None:
    secret: SecretContext = ckks_kit.secret  # type: ignore[attr-defined]
    slots = secret.preset.slots
    values = np.linspace(-0.5, 0.5, slots + 3)
    chunks = encrypt_range(secret.tenseal.data, "ckks", values, slots)
    assert len(chunks) == 2
    got = decrypt_chunks(secret, chunks, len(values))[: len(values)]
    np.testing.assert_allclose(got, values, atol=1e-3)
    # and through the codec's single-process path
    again = decrypt_chunks(secret, encrypt_chunks(secret, values, workers=1), len(values))
    np.testing.assert_allclose(again[: len(values)], values, atol=1e-3)
