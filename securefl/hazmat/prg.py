"""Mask expansion: an AES-256-CTR keystream added to a vector in place.

.. warning::

   This is hazmat: easy-to-misuse primitives. The keystream uses a fixed
   all-zero nonce (initial counter block), which is safe **only because every
   seed is used for exactly one mask**: each seed comes from HKDF with an
   ``info`` naming the round, the pair and the purpose (or from
   ``os.urandom`` for self masks). Expanding one seed twice for two different
   vectors reveals their difference. Protocol code should use the safe API in
   :mod:`securefl.secagg`.

Why AES-CTR: masks must be cryptographic (a NumPy generator seeded with a
folded 32-bit value can be brute-forced), and AES with hardware support is
also the fastest keystream available through ``cryptography``.

Keystream to words: the keystream is AES-256(seed, counter block i) for
i = 0, 1, 2, ... (128-bit big-endian counter starting at zero), read as
little-endian ``uint32`` or ``uint64`` words. :func:`add_mask` expands it in
chunks into one preallocated scratch buffer (``update_into``, no per-chunk
allocation) and adds or subtracts it in place with wrapping unsigned
arithmetic, so the whole vector's keystream never sits in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from securefl.errors import ConfigError

__all__ = ["SEED_LEN", "add_mask", "add_masks", "keystream_chunks", "mask_vector"]

SEED_LEN = 32
"""Bytes in a mask seed: one AES-256 key."""

_ZERO_NONCE = bytes(16)
_BLOCK = 16
_DTYPES = (np.dtype(np.uint32), np.dtype(np.uint64))
_DEFAULT_CHUNK_BYTES = 1 << 18
_DEFAULT_CHUNK_ELEMS = 1 << 15  # 128 KiB of uint32: a chunk and its scratch stay in L2


def _encryptor(seed: bytes) -> CipherContext:
    if not isinstance(seed, bytes) or len(seed) != SEED_LEN:
        raise ConfigError(f"a mask seed is {SEED_LEN} bytes")
    return Cipher(algorithms.AES256(seed), modes.CTR(_ZERO_NONCE)).encryptor()


def add_mask(
    buffer: npt.NDArray[np.unsignedinteger],
    seed: bytes,
    *,
    sign: int = +1,
    chunk_elems: int = _DEFAULT_CHUNK_ELEMS,
    bits: int | None = None,
) -> None:
    """Add (``sign=+1``) or subtract (``sign=-1``) the mask for ``seed`` to ``buffer`` in place.

    ``buffer`` is a C-contiguous, writeable ``uint32`` or ``uint64`` array; the
    arithmetic wraps modulo 2**32 or 2**64. With ``bits`` the result is then
    reduced modulo 2**bits (a ring Z_2^bits held in the wider dtype); since
    the mask is uniform modulo 2**64, it is uniform modulo 2**bits as well.
    Word ``k`` of the mask is always the same for a given seed and dtype, so
    a +mask and a -mask from the same seed cancel exactly.
    """
    add_masks(buffer, [(seed, sign)], chunk_elems=chunk_elems, bits=bits)


def add_masks(
    buffer: npt.NDArray[np.unsignedinteger],
    masks: Sequence[tuple[bytes, int]],
    *,
    chunk_elems: int = _DEFAULT_CHUNK_ELEMS,
    bits: int | None = None,
) -> None:
    """:func:`add_mask` for every ``(seed, sign)`` in ``masks``, in one pass over ``buffer``.

    The result is the same as calling :func:`add_mask` once per seed (modular
    addition commutes), but the loop runs chunk by chunk with one keystream per
    seed, so each chunk of ``buffer`` stays in cache while every mask is added
    to it, instead of the whole vector streaming through memory once per seed.
    """
    if not isinstance(buffer, np.ndarray) or buffer.dtype not in _DTYPES:
        raise ConfigError("buffer must be a uint32 or uint64 numpy array")
    if not buffer.flags.c_contiguous or not buffer.flags.writeable:
        raise ConfigError("buffer must be C-contiguous and writeable")
    if isinstance(chunk_elems, bool) or not isinstance(chunk_elems, int) or chunk_elems < 1:
        raise ConfigError("chunk_elems must be a positive int")
    itemsize = buffer.dtype.itemsize
    if bits is not None and (
        isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8 * itemsize
    ):
        raise ConfigError(f"bits must be in 1..{8 * itemsize} for {buffer.dtype}")
    streams = []
    for seed, sign in masks:
        if sign not in (1, -1) or isinstance(sign, bool):
            raise ConfigError("sign must be +1 or -1")
        streams.append((_encryptor(seed), np.add if sign == 1 else np.subtract))
    flat = buffer.reshape(-1)
    n = flat.size
    # Every chunk but the last must consume whole AES blocks, or keystream bytes
    # would be dropped between chunks: round the chunk up to whole blocks.
    per_block = _BLOCK // itemsize
    chunk = -(-min(chunk_elems, max(n, 1)) // per_block) * per_block
    chunk_bytes = chunk * itemsize
    # update_into asks for block_size - 1 spare bytes at the end of its output.
    raw = bytearray(chunk_bytes + _BLOCK - 1)
    zeros = bytes(chunk_bytes)
    scratch = np.frombuffer(raw, dtype=np.uint8, count=chunk_bytes).view(
        buffer.dtype.newbyteorder("<")
    )
    reduce = bits is not None and bits < 8 * itemsize
    ring = buffer.dtype.type((1 << bits) - 1) if reduce and bits is not None else None
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        need = -(-m * itemsize // _BLOCK) * _BLOCK
        # The last, shorter chunk ends every stream, so a partial block is fine.
        plain = zeros if need == chunk_bytes else zeros[:need]
        part = flat[start : start + m]
        words = scratch[:m]
        for encryptor, op in streams:
            encryptor.update_into(plain, raw)
            op(part, words, out=part)
        if ring is not None:
            np.bitwise_and(part, ring, out=part)


def mask_vector(
    seed: bytes, n: int, dtype: npt.DTypeLike = np.uint32
) -> npt.NDArray[np.unsignedinteger]:
    """The first ``n`` mask words for ``seed``: the same words :func:`add_mask` adds."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError("n must be a non-negative int")
    dt = np.dtype(dtype)
    if dt not in _DTYPES:
        raise ConfigError("dtype must be uint32 or uint64")
    # Encrypt zeros straight into the result (no second pass adding to zeros);
    # the spare block at the end is the room update_into asks for.
    encryptor = _encryptor(seed)
    nbytes = n * dt.itemsize
    raw = np.empty(nbytes + _BLOCK, dtype=np.uint8)
    view = memoryview(raw)  # type: ignore[arg-type]
    step = _DEFAULT_CHUNK_BYTES
    zeros = bytes(min(step, nbytes))
    for off in range(0, nbytes, step):
        k = min(step, nbytes - off)
        encryptor.update_into(zeros[:k], view[off : off + k + _BLOCK - 1])
    return raw[:nbytes].view(dt.newbyteorder("<")).astype(dt, copy=False)


def keystream_chunks(
    seed: bytes, n: int, dtype: npt.DTypeLike, *, chunk_elems: int = _DEFAULT_CHUNK_ELEMS
) -> Iterator[npt.NDArray[np.unsignedinteger]]:
    """The words of :func:`mask_vector` for ``seed``, ``chunk_elems`` at a time.

    Each chunk is a view of one scratch buffer that the next chunk overwrites
    (and that the consumer may modify in place): a consumer that streams, such
    as stochastic rounding, keeps its working set in cache and never
    allocates the whole keystream.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError("n must be a non-negative int")
    if isinstance(chunk_elems, bool) or not isinstance(chunk_elems, int) or chunk_elems < 1:
        raise ConfigError("chunk_elems must be a positive int")
    dt = np.dtype(dtype)
    if dt not in _DTYPES:
        raise ConfigError("dtype must be uint32 or uint64")
    encryptor = _encryptor(seed)
    per_block = _BLOCK // dt.itemsize
    chunk = -(-min(chunk_elems, max(n, 1)) // per_block) * per_block
    chunk_bytes = chunk * dt.itemsize
    raw = bytearray(chunk_bytes + _BLOCK - 1)
    zeros = bytes(chunk_bytes)
    words = np.frombuffer(raw, dtype=np.uint8, count=chunk_bytes).view(dt.newbyteorder("<"))
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        need = -(-m * dt.itemsize // _BLOCK) * _BLOCK
        encryptor.update_into(zeros if need == chunk_bytes else zeros[:need], raw)
        yield words[:m]
