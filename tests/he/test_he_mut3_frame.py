"""The size bound read from a ciphertext's bytes, per SEAL compression mode, on hand-built frames.

A server must refuse any ciphertext that SEAL would load into more memory than one fresh
ciphertext, and accept every one that fits: uncompressed by its length, zlib by inflating
at most the bound, zstd by the declared content size and the raw/RLE blocks' sizes.
"""

from __future__ import annotations

import struct
import zlib

import pytest

from securefl.errors import WireError
from securefl.he._frame import _seal_bound, _zstd_bound

BOUND = 4096


def _seal(mode: int, body: bytes) -> bytes:
    """A SEAL serialization header (magic, header size 16, version, mode, total size) + body."""
    return struct.pack("<HBBBBHQ", 0xA15E, 16, 4, 1, mode, 0, 16 + len(body)) + body


def _zstd(content: int, blocks: list[tuple[int, int, bytes]]) -> bytes:
    """A single-segment zstd frame, one-byte declared content size; blocks (kind, size, data)."""
    out = struct.pack("<I", 0xFD2FB528) + bytes([0x20, content])
    for i, (kind, size, data) in enumerate(blocks):
        last = 1 if i == len(blocks) - 1 else 0
        out += (last | kind << 1 | size << 3).to_bytes(3, "little") + data
    return out


def test_an_uncompressed_ciphertext_within_the_bound_is_accepted() -> None:
    _seal_bound(_seal(0, bytes(BOUND)), BOUND)
    with pytest.raises(WireError):
        _seal_bound(_seal(0, bytes(BOUND + 1)), BOUND)


def test_a_zlib_ciphertext_is_bounded_by_what_it_inflates_to() -> None:
    # A small compressed body that inflates past the bound is a memory bomb.
    bomb = zlib.compress(bytes(BOUND + 1))
    assert len(bomb) < BOUND
    with pytest.raises(WireError):
        _seal_bound(_seal(1, bomb), BOUND)
    # Inflating to exactly the bound fits.
    _seal_bound(_seal(1, zlib.compress(bytes(BOUND))), BOUND)


def test_a_zstd_rle_block_regenerating_the_declared_size_is_accepted() -> None:
    _zstd_bound(_zstd(200, [(1, 200, b"\x00")]), BOUND)
    _seal_bound(_seal(2, _zstd(200, [(1, 120, b"\x07"), (0, 80, bytes(80))])), BOUND)


def test_zstd_raw_blocks_regenerating_more_than_declared_are_refused() -> None:
    # Each block alone fits the declared 100 bytes; together they regenerate 120.
    with pytest.raises(WireError):
        _zstd_bound(_zstd(100, [(0, 60, bytes(60)), (0, 60, bytes(60))]), BOUND)
    # One byte over the declaration (a one-byte size field carries no 256 offset).
    with pytest.raises(WireError):
        _zstd_bound(_zstd(100, [(0, 101, bytes(101))]), BOUND)
    with pytest.raises(WireError):
        _zstd_bound(_zstd(100, [(1, 101, b"\x00")]), BOUND)
