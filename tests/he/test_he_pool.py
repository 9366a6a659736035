"""Encryption split across helper processes gives the same ciphertexts' plaintexts, in order."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from securefl.aggregation.base import RoundContext
from securefl.errors import ConfigError
from securefl.he import BFV_N4096, HEServerMode, HESiteMode, SecretContext, decrypt_aggregate
from securefl.he._codec import decrypt_chunks, encrypt_chunks, num_chunks
from securefl.he._pool import MIN_CHUNKS_PER_CORE, EncryptPool
from securefl.wire import pack, unpack

# enough chunks for two cores, plus a short last chunk
D_BIG = 2 * MIN_CHUNKS_PER_CORE * BFV_N4096.slots + 7


@pytest.fixture(scope="module")
def pool(bfv_secret: SecretContext) -> Iterator[EncryptPool]:
    p = EncryptPool(bfv_secret, helpers=1)
    yield p
    p.close()


def test_pool_encryption_decrypts_to_the_input_in_order(
    bfv_secret: SecretContext, pool: EncryptPool
) -> None:
    levels = bfv_secret.preset.quant_levels
    gen = np.random.default_rng(3)  # test data only; no key material
    q = gen.integers(-levels, levels + 1, size=D_BIG)
    chunks = encrypt_chunks(bfv_secret, q, pool=pool)
    assert len(chunks) == num_chunks(bfv_secret.preset, D_BIG)
    got = decrypt_chunks(bfv_secret, chunks, D_BIG)[:D_BIG]
    t = bfv_secret.preset.plain_modulus
    assert t is not None
    assert np.array_equal(np.where(got > t // 2, got - t, got), q)


def test_pool_refuses_pickling_and_public_contexts(
    bfv_secret: SecretContext, pool: EncryptPool
) -> None:
    with pytest.raises(TypeError):
        pickle.dumps(pool)
    with pytest.raises(ConfigError):
        EncryptPool(bfv_secret.public(), helpers=1)  # type: ignore[arg-type]


def test_site_mode_starts_helpers_only_for_large_updates(bfv_secret: SecretContext) -> None:
    mode = HESiteMode(bfv_secret, workers=2)
    assert mode.pool(5000) is None
    assert HESiteMode(bfv_secret, workers=2, processes=False).pool(D_BIG) is None
    assert HESiteMode(bfv_secret, workers=1).pool(D_BIG) is None
    mode.close()


def _round(
    secret: SecretContext, workers: int, garbage_site: str | None
) -> tuple[Any, Any, set[str]]:
    cohort = ("a", "b", "c")
    rc = RoundContext(federation="f", round=1, cohort=cohort, dimension=D_BIG, max_weight=10.0)
    gen = np.random.default_rng(5)  # test data only; no key material
    xs = {k: (gen.normal(size=D_BIG) * 0.01).astype(np.float32) for k in cohort}
    site_mode = HESiteMode(secret, processes=False)
    server_mode = HEServerMode(secret.public_context_bytes(), workers=workers)
    server = server_mode.server(rc)
    for k in cohort:
        env = site_mode.site(rc, k).submit(xs[k], 10.0)[0]
        if k == garbage_site:
            obj = unpack(env.payload)
            obj["chunks"][-1] = b"\x00" * 64  # lands in the helper's half
            env = dataclasses.replace(env, payload=pack(obj))
        server.handle(env)
    res = server.result
    assert res is not None and res.encrypted_sum is not None
    server_mode.close()
    mean = decrypt_aggregate(secret, res.encrypted_sum, res.total_weight, D_BIG)
    kept = [k for k in cohort if k != garbage_site]
    ref = sum(xs[k].astype(np.float64) for k in kept) / len(kept)
    return mean, ref, set(server.rejected)


def test_server_helper_sum_matches_the_plaintext_mean(bfv_secret: SecretContext) -> None:
    mean, ref, rejected = _round(bfv_secret, workers=2, garbage_site=None)
    assert not rejected
    assert np.max(np.abs(mean - ref)) < 3 * bfv_secret.clip / bfv_secret.preset.quant_levels


def test_server_helper_rejects_a_site_whose_second_half_is_garbage(
    bfv_secret: SecretContext,
) -> None:
    mean, ref, rejected = _round(bfv_secret, workers=2, garbage_site="b")
    assert rejected == {"b"}
    assert np.max(np.abs(mean - ref)) < 3 * bfv_secret.clip / bfv_secret.preset.quant_levels
