"""Encrypt a vector in slot-sized chunks, add chunk lists in place, decrypt.

Why chunks of exactly one ciphertext: TenSEAL's vectors hold at most one
ciphertext's slots, and a flat list of per-chunk ciphertexts lets the server
check the count before adding anything. The TenSEAL C++ constructors are
called directly: the Python wrappers first build a ``PlainTensor`` from the
list, which measured about 2.5 times slower than encrypting (docs/he.md).
Sums are taken in place on the first site's deserialized ciphertexts, never
on a ``copy()``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
import tenseal as ts

from securefl.errors import WireError
from securefl.he._context import PublicContext, SecretContext
from securefl.he._presets import HEPreset

__all__ = ["ChunkSum", "decrypt_chunks", "encrypt_chunks", "load_chunks", "num_chunks"]


def num_chunks(preset: HEPreset, dimension: int) -> int:
    """How many ciphertexts carry a vector of ``dimension`` values."""
    return -(-dimension // preset.slots)


def _chunk_lengths(preset: HEPreset, dimension: int) -> list[int]:
    slots = preset.slots
    return [min(slots, dimension - i * slots) for i in range(num_chunks(preset, dimension))]


def encrypt_chunks(
    secret: SecretContext, values: npt.NDArray[Any], *, workers: int = 2
) -> list[bytes]:
    """Encrypt ``values`` (int64 for BFV, float64 for CKKS) as serialized chunks."""
    preset = secret.preset
    cpp = secret.tenseal.data
    slots = preset.slots
    dtype = np.int64 if preset.scheme == "bfv" else np.float64
    lists = [values[i : i + slots].astype(dtype).tolist() for i in range(0, len(values), slots)]
    if preset.scheme == "bfv":

        def enc(chunk: list[Any]) -> bytes:
            return bytes(ts._ts_cpp.BFVVector(cpp, chunk).serialize())
    else:

        def enc(chunk: list[Any]) -> bytes:
            return bytes(ts._ts_cpp.CKKSVector(cpp, chunk).serialize())

    if workers <= 1 or len(lists) < 2:
        return [enc(c) for c in lists]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(enc, lists))


def load_chunks(context: PublicContext | SecretContext, chunks: Any, dimension: int) -> list[Any]:
    """Deserialize and check a chunk list; any problem is a :class:`WireError`."""
    preset = context.preset
    lengths = _chunk_lengths(preset, dimension)
    if not isinstance(chunks, list) or not all(isinstance(c, bytes) for c in chunks):
        raise WireError("encrypted update: chunks must be a list of byte strings")
    if len(chunks) != len(lengths):
        raise WireError(
            f"encrypted update has {len(chunks)} chunks; dimension {dimension} needs {len(lengths)}"
        )
    loader = ts.bfv_vector_from if preset.scheme == "bfv" else ts.ckks_vector_from
    vectors = []
    for i, (raw, n) in enumerate(zip(chunks, lengths, strict=True)):
        try:
            vec = loader(context.tenseal, raw)
        except Exception:
            raise WireError(
                f"chunk {i} is not a ciphertext for preset {preset.name} "
                "(garbage, or made under other parameters)"
            ) from None
        if vec.size() != n:
            raise WireError(f"chunk {i} holds {vec.size()} values, expected {n}")
        vectors.append(vec)
    return vectors


class ChunkSum:
    """A running sum of chunk lists, added in place."""

    def __init__(self) -> None:
        self._acc: list[Any] | None = None
        self.count = 0

    def add(self, vectors: list[Any]) -> None:
        """Add one site's (already checked) ciphertexts."""
        if self._acc is None:
            self._acc = vectors  # the first site's ciphertexts become the accumulator
        else:
            for acc, vec in zip(self._acc, vectors, strict=True):
                acc.add_(vec)
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
    vectors = load_chunks(secret, chunks, dimension)
    dtype = np.int64 if secret.preset.scheme == "bfv" else np.float64
    parts = [np.asarray(v.decrypt(), dtype=dtype) for v in vectors]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
