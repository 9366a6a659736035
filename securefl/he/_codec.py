"""Encrypt a vector in slot-sized chunks, add chunk lists in place, decrypt.

Why chunks of exactly one ciphertext: TenSEAL's vectors hold at most one
ciphertext's slots, and a flat list of per-chunk ciphertexts lets the server
check the count before adding anything. Encryption itself lives in
:mod:`securefl.he._pool` (TenSEAL's C++ constructors, on every core).
Sums are taken in place on the first site's deserialized ciphertexts, never
on a ``copy()``.

Why every chunk's framing is read from its bytes first
(:mod:`securefl.he._frame`): TenSEAL would otherwise deserialize every
ciphertext a chunk declares, at any size, before a check could run.

Why every chunk is checked structurally on load: SEAL accepts any ciphertext
valid for *some* level of the context, at any scale, of any size. Adding two
that differ raises a plain ``ValueError`` deep in TenSEAL, and a ciphertext of
size 3 adds without complaint. So each chunk must hold exactly one SEAL
ciphertext of size 2 at the context's first data level, in the scheme's form,
at the preset's scale, not transparent; anything else is the sender's
:class:`WireError` before it can reach the sum.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
import tenseal as ts

from securefl.errors import WireError
from securefl.he._context import PublicContext, SecretContext
from securefl.he._frame import check_chunk_frame
from securefl.he._pool import MIN_CHUNKS_PER_CORE, EncryptPool, encrypt_range
from securefl.he._presets import HEPreset

__all__ = [
    "ChunkSum",
    "check_chunk_list",
    "decrypt_chunks",
    "decrypt_vectors",
    "encrypt_chunks",
    "load_chunks",
    "load_range",
    "num_chunks",
]


def num_chunks(preset: HEPreset, dimension: int) -> int:
    """How many ciphertexts carry a vector of ``dimension`` values."""
    return -(-dimension // preset.slots)


def _chunk_lengths(preset: HEPreset, dimension: int) -> list[int]:
    slots = preset.slots
    return [min(slots, dimension - i * slots) for i in range(num_chunks(preset, dimension))]


def encrypt_chunks(
    secret: SecretContext,
    values: npt.NDArray[Any],
    *,
    workers: int = 2,
    pool: EncryptPool | None = None,
) -> list[bytes]:
    """Encrypt ``values`` (int64 for BFV, float64 for CKKS) as serialized chunks.

    With a ``pool`` (helper processes, see :mod:`securefl.he._pool`) and
    enough chunks to pay for the pipe, the chunks are split across processes;
    otherwise ``workers`` threads share them (TenSEAL holds the GIL, so
    threads gain little).
    """
    preset = secret.preset
    cpp = secret.tenseal.data
    slots = preset.slots
    dtype = np.int64 if preset.scheme == "bfv" else np.float64
    values = np.ascontiguousarray(values, dtype=dtype)
    chunks = num_chunks(preset, len(values))
    if pool is not None and chunks >= MIN_CHUNKS_PER_CORE * (pool.helpers + 1):
        return pool.encrypt(cpp, preset.scheme, values, slots)
    if workers <= 1 or chunks < 2:
        return encrypt_range(cpp, preset.scheme, values, slots)
    per = -(-chunks // workers) * slots
    with ThreadPoolExecutor(max_workers=workers) as threads:
        parts = threads.map(
            lambda k: encrypt_range(cpp, preset.scheme, values[k : k + per], slots),
            range(0, len(values), per),
        )
        return [c for part in parts for c in part]


def check_chunk_list(preset: HEPreset, chunks: Any, dimension: int) -> list[int]:
    """Check a chunk list's shape; returns the expected value count of each chunk."""
    lengths = _chunk_lengths(preset, dimension)
    if not isinstance(chunks, list) or not all(isinstance(c, bytes) for c in chunks):
        raise WireError("encrypted update: chunks must be a list of byte strings")
    if len(chunks) != len(lengths):
        raise WireError(
            f"encrypted update has {len(chunks)} chunks; dimension {dimension} needs {len(lengths)}"
        )
    return lengths


def _check_structure(vec: Any, preset: HEPreset, first_parms: list[int], i: int) -> None:
    """One fresh ciphertext, size 2, first data level, preset's scale and form (WireError)."""
    ckks = preset.scheme == "ckks"
    scale = 2.0**preset.scale_bits if ckks and preset.scale_bits is not None else 1.0
    cts = vec.ciphertext()
    if len(cts) != 1:
        raise WireError(f"chunk {i} holds {len(cts)} ciphertexts, expected 1")
    ct = cts[0]
    if ct.size() != 2:
        raise WireError(f"chunk {i} is a ciphertext of size {ct.size()}, expected 2")
    if list(ct.parms_id()) != first_parms:
        raise WireError(f"chunk {i} is at another parameter level than preset {preset.name}")
    # the SEAL ciphertext's scale is what addition and decoding use (TenSEAL's
    # own per-vector scale only serves plaintext operations, which we never run)
    if ct.scale != scale:
        raise WireError(f"chunk {i} is at another scale than preset {preset.name}")
    if ct.is_ntt_form() != ckks or ct.is_transparent():
        raise WireError(f"chunk {i} is not a fresh {preset.scheme} ciphertext")


def load_range(
    context: PublicContext | SecretContext, chunks: list[bytes], lengths: list[int], first: int
) -> list[Any]:
    """Deserialize chunks ``first, first + 1, ...`` and check them (WireError)."""
    preset = context.preset
    loader = ts.bfv_vector_from if preset.scheme == "bfv" else ts.ckks_vector_from
    first_parms = list(context.tenseal.seal_context().data.first_parms_id())
    vectors = []
    for i, (raw, n) in enumerate(zip(chunks, lengths, strict=True), start=first):
        check_chunk_frame(preset, raw, n, i)  # from the bytes, before anything is allocated
        try:
            vec = loader(context.tenseal, raw)
            size = vec.size()
        except Exception:
            raise WireError(
                f"chunk {i} is not a ciphertext for preset {preset.name} "
                "(garbage, or made under other parameters)"
            ) from None
        if size != n:
            raise WireError(f"chunk {i} holds {size} values, expected {n}")
        _check_structure(vec, preset, first_parms, i)
        vectors.append(vec)
    return vectors


def load_chunks(context: PublicContext | SecretContext, chunks: Any, dimension: int) -> list[Any]:
    """Deserialize and check a chunk list; any problem is a :class:`WireError`."""
    lengths = check_chunk_list(context.preset, chunks, dimension)
    return load_range(context, chunks, lengths, 0)


class ChunkSum:
    """A running sum of chunk lists, added in place."""

    def __init__(self) -> None:
        self._acc: list[Any] | None = None
        self.count = 0
        #: True once an addition failed part-way: the sum holds part of an update.
        self.broken = False

    def add(self, vectors: list[Any]) -> None:
        """Add one site's (already checked) ciphertexts.

        Should TenSEAL still refuse an addition part-way (the load checks make
        that a bug, not an input), the sum is marked :attr:`broken` and must
        not be released: it would hold part of one site's update.
        """
        if self._acc is None:
            self._acc = vectors  # the first site's ciphertexts become the accumulator
        else:
            for k, (acc, vec) in enumerate(zip(self._acc, vectors, strict=True)):
                try:
                    acc.add_(vec)
                except Exception:
                    self.broken = self.broken or k > 0
                    raise WireError(f"chunk {k} could not be added to the sum") from None
        self.count += 1

    @property
    def vectors(self) -> list[Any]:
        """The accumulated ciphertexts (empty before the first add)."""
        return [] if self._acc is None else self._acc

    def serialize(self) -> list[bytes]:
        """The sum as serialized chunks."""
        return [bytes(v.serialize()) for v in self.vectors]


def decrypt_chunks(secret: SecretContext, chunks: Any, dimension: int) -> npt.NDArray[Any]:
    """Decrypt a chunk list to int64 (BFV, still modulo t) or float64 (CKKS)."""
    return decrypt_vectors(secret, load_chunks(secret, chunks, dimension))


def decrypt_vectors(secret: SecretContext, vectors: list[Any]) -> npt.NDArray[Any]:
    """Decrypt loaded (checked) chunks to int64 (BFV, still modulo t) or float64 (CKKS)."""
    dtype = np.int64 if secret.preset.scheme == "bfv" else np.float64
    parts = [np.asarray(v.decrypt(), dtype=dtype) for v in vectors]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
