"""AES-CTR mask PRG: known keystream, chunking invariance, cancellation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.errors import ConfigError
from securefl.hazmat.prg import add_mask, add_masks, keystream_chunks, mask_vector

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "hazmat_prg.json").read_text())


@pytest.mark.parametrize("v", VECTORS["mask"], ids=lambda v: f"n{v['n']}")
def test_first_keystream_words(v: dict) -> None:
    seed, n = bytes.fromhex(v["seed"]), v["n"]
    assert mask_vector(seed, n, np.uint32).tolist() == [int(w) for w in v["uint32"]]
    assert mask_vector(seed, n, np.uint64).tolist() == [int(w) for w in v["uint64"]]
    buf = np.zeros(n, np.uint32)
    add_mask(buf, seed)
    assert buf.tobytes() == bytes.fromhex(v["keystream"])[: 4 * n]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 3000), st.integers(1, 700), st.sampled_from([np.uint32, np.uint64]))
def test_chunk_size_does_not_change_the_mask(n: int, chunk: int, dtype: type) -> None:
    seed = os.urandom(32)
    buf = np.zeros(n, dtype)
    add_mask(buf, seed, chunk_elems=chunk)
    assert np.array_equal(buf, mask_vector(seed, n, dtype))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_pairwise_masks_cancel_over_any_subset(data: st.DataObject) -> None:
    dtype = data.draw(st.sampled_from([np.uint32, np.uint64]))
    bits = data.draw(st.one_of(st.none(), st.integers(16, 8 * np.dtype(dtype).itemsize)))
    n_sites = data.draw(st.integers(2, 6))
    d = data.draw(st.integers(1, 500))
    sites = data.draw(st.lists(st.sampled_from(range(n_sites)), min_size=2, unique=True))
    modulus_mask = (1 << (bits or 8 * np.dtype(dtype).itemsize)) - 1
    seeds = {(u, v): os.urandom(32) for u in sites for v in sites if u < v}
    inputs = {
        u: np.frombuffer(os.urandom(d * np.dtype(dtype).itemsize), dtype) & dtype(modulus_mask)
        for u in sites
    }
    total = np.zeros(d, dtype)
    for u in sites:
        y = inputs[u].copy()
        for (a, b), seed in seeds.items():
            if u in (a, b):
                add_mask(y, seed, sign=+1 if u == a else -1, bits=bits)
        assert not np.array_equal(y, inputs[u])
        total += y
    total &= dtype(modulus_mask)
    expected = sum((inputs[u] for u in sites), np.zeros(d, dtype)) & dtype(modulus_mask)
    assert np.array_equal(total, expected)


def test_add_mask_with_bits_stays_in_the_ring() -> None:
    buf = np.zeros(10_000, np.uint32)
    add_mask(buf, os.urandom(32), bits=20)
    assert int(buf.max()) < 2**20
    assert int(buf.max()) > 2**19  # the mask fills the ring rather than vanishing


def test_different_seeds_give_different_masks() -> None:
    assert not np.array_equal(mask_vector(os.urandom(32), 64), mask_vector(os.urandom(32), 64))


def test_multidimensional_buffer_is_masked_as_flat() -> None:
    seed = os.urandom(32)
    buf = np.zeros((7, 9), np.uint64)
    add_mask(buf, seed)
    assert np.array_equal(buf.reshape(-1), mask_vector(seed, 63, np.uint64))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"buffer": np.zeros(4, np.int32)},
        {"buffer": np.zeros(4, np.float32)},
        {"buffer": np.zeros((4, 4), np.uint32)[:, 0]},
        {"seed": bytes(16)},
        {"sign": 0},
        {"chunk_elems": 0},
        {"bits": 33},
    ],
)
def test_bad_arguments_refused(kwargs: dict) -> None:
    args = {"buffer": np.zeros(4, np.uint32), "seed": bytes(32)} | kwargs
    buffer, seed = args.pop("buffer"), args.pop("seed")
    with pytest.raises(ConfigError):
        add_mask(buffer, seed, **args)


def test_read_only_buffer_refused() -> None:
    buf = np.zeros(4, np.uint32)
    buf.flags.writeable = False
    with pytest.raises(ConfigError):
        add_mask(buf, bytes(32))


# -- boundaries mutation testing showed unguarded (docs/mutation.md) ---------------


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_long_mask_is_the_aes_ctr_keystream(dtype: type) -> None:
    # Longer than one internal step, and not a whole number of blocks.
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    seed = os.urandom(32)
    n = 3 * (1 << 15) + 5
    nbytes = n * np.dtype(dtype).itemsize
    enc = Cipher(algorithms.AES256(seed), modes.CTR(bytes(16))).encryptor()
    expected = np.frombuffer(enc.update(bytes(nbytes)), dtype=np.dtype(dtype).newbyteorder("<"))
    assert np.array_equal(mask_vector(seed, n, dtype), expected)
    buffer = np.zeros(n, dtype=dtype)
    add_masks(buffer, [(seed, 1)])
    assert np.array_equal(buffer, expected)


def test_one_bit_ring_is_accepted_and_reduced() -> None:
    seed = os.urandom(32)
    buffer = np.zeros(100, dtype=np.uint32)
    add_masks(buffer, [(seed, 1)], bits=1)
    assert np.array_equal(buffer, mask_vector(seed, 100, np.uint32) & np.uint32(1))


@pytest.mark.parametrize(
    "call",
    [
        lambda: mask_vector(os.urandom(32), -1, np.uint32),
        lambda: mask_vector(os.urandom(32), 3.0, np.uint32),
        lambda: list(keystream_chunks(os.urandom(32), -1, np.uint32)),
        lambda: list(keystream_chunks(os.urandom(32), 3.0, np.uint32)),
        lambda: list(keystream_chunks(os.urandom(32), 3, np.uint32, chunk_elems=0)),
        lambda: list(keystream_chunks(os.urandom(32), 3, np.uint32, chunk_elems=2.0)),
        lambda: add_masks(np.zeros(3, np.uint32), [], chunk_elems=2.0),
        lambda: add_masks(np.zeros(3, np.uint32), [], bits=2.0),
        lambda: add_masks(np.zeros(3, np.uint32), [], bits=0),
    ],
)
def test_non_int_or_out_of_range_sizes_refused(call: object) -> None:
    with pytest.raises(ConfigError):
        call()  # type: ignore[operator]
