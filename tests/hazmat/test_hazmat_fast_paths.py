"""The fused fast paths give exactly what the simple definitions give."""

import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.hazmat.prg import add_mask, add_masks, keystream_chunks, mask_vector
from securefl.secagg._messages import pack_ring, unpack_ring


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 5000), chunk=st.sampled_from([1, 7, 64, 1 << 12]))
def test_keystream_chunks_concatenate_to_the_mask_vector(n, chunk):
    seed = os.urandom(32)
    # each chunk is a view the next one overwrites: copy as we go
    pieces = [c.copy() for c in keystream_chunks(seed, n, np.uint32, chunk_elems=chunk)]
    joined = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint32)
    np.testing.assert_array_equal(joined, mask_vector(seed, n, np.uint32))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3000), k=st.integers(1, 6), bits=st.sampled_from([None, 16, 24, 32]))
def test_add_masks_equals_adding_each_mask_in_turn(n, k, bits):
    masks = [(os.urandom(32), 1 if i % 2 else -1) for i in range(k)]
    start = np.frombuffer(os.urandom(4 * n), dtype=np.uint32).copy()
    if bits is not None and bits < 32:
        start &= np.uint32((1 << bits) - 1)
    fused, one_by_one = start.copy(), start.copy()
    add_masks(fused, masks, chunk_elems=97, bits=bits)
    for seed, sign in masks:
        add_mask(one_by_one, seed, sign=sign, bits=bits)
    np.testing.assert_array_equal(fused, one_by_one)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 2000), bits=st.sampled_from([16, 20, 24, 31, 32]))
def test_unpack_ring_into_a_caller_buffer_matches_a_fresh_decode(n, bits):
    values = np.frombuffer(os.urandom(4 * n), dtype=np.uint32) & np.uint32((1 << bits) - 1)
    data = pack_ring(values, bits)
    out = np.empty(n, dtype=np.uint32)
    decoded = unpack_ring(data, n, bits, out=out)
    np.testing.assert_array_equal(decoded, values)
    np.testing.assert_array_equal(unpack_ring(data, n, bits), values)
