"""Clip, scale and stochastically round floats to integers for BFV, and back.

Why here and not in ``securefl.hazmat.quantize``: that module quantizes into
the ring Z_2^b used by masking; BFV's plaintext ring is Z_t for a batching
prime t, and the sum is read back centred in (-t/2, t/2). The rounding is the
same idea: round up with probability equal to the fractional part, so the
quantized value is an unbiased estimate of the input. The coin flips come
from a CSPRNG, never NumPy's RNG: rounding decisions leak low-order bits of
the update, so they must be unpredictable. They are an AES-256-CTR keystream
(``cryptography``) under a fresh 256-bit key from ``os.urandom`` per call,
the NIST CTR_DRBG construction: 8 MB of it took 12 ms against 38 ms for
``os.urandom`` itself, which was most of a d = 1e6 quantization.
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from securefl.errors import ConfigError, OverflowRefusedError

__all__ = ["dequantize_sum", "quantize", "stochastic_round"]


def _uniform(n: int) -> npt.NDArray[np.float64]:
    """n uniform floats in [0, 1) from 53 random bits each (AES-256-CTR, fresh key)."""
    # A fresh key per call, so the all-zero counter block never repeats under one key.
    keystream = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(bytes(16))).encryptor()
    raw = np.frombuffer(keystream.update(bytes(8 * n)), dtype="<u8")
    return (raw >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def stochastic_round(
    x: npt.NDArray[np.float64], uniform: npt.NDArray[np.float64] | None = None
) -> npt.NDArray[np.int64]:
    """Round each value down or up so that the expectation is the value itself.

    ``uniform`` exists for known-answer tests only; callers leave it ``None``.
    """
    u = _uniform(x.shape[0]) if uniform is None else uniform
    floor = np.floor(x)
    return (floor + (u < (x - floor))).astype(np.int64)


def quantize(
    x: npt.NDArray[np.floating],
    *,
    clip: float,
    levels: int,
    uniform: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.int64]:
    """Clip to [-clip, clip] and map linearly onto integers in [-levels, levels]."""
    if not clip > 0 or not np.isfinite(clip):
        raise ConfigError("quantization clip must be a positive finite number")
    if levels < 1:
        raise ConfigError("quantization needs at least one level")
    values = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ConfigError("cannot quantize NaN or infinite values")
    scaled = np.clip(values, -clip, clip) * (levels / clip)
    q = stochastic_round(scaled, uniform)
    return np.clip(q, -levels, levels)


def dequantize_sum(
    total: npt.NDArray[np.int64], *, clip: float, levels: int, summands: int, modulus: int
) -> npt.NDArray[np.float64]:
    """Read a sum of ``summands`` quantized vectors back from Z_t (centred), as floats.

    Refuses (does not warn) when ``summands`` values of magnitude ``levels``
    could have wrapped around ``modulus``.
    """
    if summands < 1 or summands * levels >= modulus // 2:
        raise OverflowRefusedError(
            f"a sum of {summands} values in [-{levels}, {levels}] may wrap modulo {modulus}"
        )
    t = np.asarray(total, dtype=np.int64) % modulus
    centred = np.where(t > modulus // 2, t - modulus, t)
    return centred.astype(np.float64) * (clip / levels)
