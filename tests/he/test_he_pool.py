"""Encryption split across helper processes gives the same ciphertexts' plaintexts, in order."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import numpy as np
import pytest

from securefl.errors import ConfigError
from securefl.hazmat.sign import SigningKey
from securefl.he import BFV_N4096, HESiteMode, SecretContext
from securefl.he._codec import decrypt_chunks, encrypt_chunks, num_chunks
from securefl.he._pool import MIN_CHUNKS_PER_CORE, EncryptPool

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
    key = SigningKey.generate()
    mode = HESiteMode(bfv_secret, site_id="a", signing_key=key, max_weight=1.0, workers=2)
    assert mode.pool(5000) is None
    started = mode.pool(D_BIG)
    assert started is not None and started.helpers == 1
    off = HESiteMode(
        bfv_secret, site_id="a", signing_key=key, max_weight=1.0, workers=2, processes=False
    )
    assert off.pool(D_BIG) is None
    assert (
        HESiteMode(bfv_secret, site_id="a", signing_key=key, max_weight=1.0, workers=1).pool(D_BIG)
        is None
    )
    mode.close()
