"""The codec's contract where the decoders rely on it: BFV decrypts to exact int64 (still
modulo t), CKKS to float64, an empty list to an empty array of that type; a sum counts
its summands.
"""

from __future__ import annotations

import numpy as np
from conftest import Kit

from securefl.he._codec import ChunkSum, decrypt_vectors, encrypt_chunks, load_chunks

D = 40


def test_bfv_decrypts_to_exact_int64_and_ckks_to_float64(bfv_kit: Kit, ckks_kit: Kit) -> None:
    secret = bfv_kit.secret
    t = secret.preset.plain_modulus
    assert t is not None
    values = np.arange(-D // 2, D // 2, dtype=np.int64) * 3
    vectors = load_chunks(secret, encrypt_chunks(secret, values, workers=1), D)
    got = decrypt_vectors(secret, vectors)[:D]
    assert got.dtype == np.int64
    assert np.array_equal(got % t, values % t)
    ckks = ckks_kit.secret
    floats = np.linspace(-0.01, 0.01, D)
    out = decrypt_vectors(ckks, load_chunks(ckks, encrypt_chunks(ckks, floats, workers=1), D))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out[:D], floats, atol=1e-4)


def test_no_chunks_decrypt_to_an_empty_array_of_the_schemes_type(
    bfv_kit: Kit, ckks_kit: Kit
) -> None:
    empty = decrypt_vectors(bfv_kit.secret, [])
    assert empty.shape == (0,) and empty.dtype == np.int64
    empty = decrypt_vectors(ckks_kit.secret, [])
    assert empty.shape == (0,) and empty.dtype == np.float64


def test_a_chunk_sum_counts_its_summands(bfv_kit: Kit) -> None:
    secret = bfv_kit.secret
    total = ChunkSum()
    assert total.count == 0 and total.vectors == []
    for k in range(3):
        update = np.full(D, k + 1, dtype=np.int64)
        total.add(load_chunks(secret, encrypt_chunks(secret, update, workers=1), D))
    assert total.count == 3
    assert np.array_equal(decrypt_vectors(secret, total.vectors)[:D], np.full(D, 6))
