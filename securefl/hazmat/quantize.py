"""Fixed-point quantization of float updates into the ring Z_2^bits for masked sums.

.. warning::

   This is hazmat: easy-to-misuse primitives. A ring too small for the number
   of summands wraps silently and corrupts the model, so
   :class:`QuantizationParams` *refuses* such configurations rather than
   warning. Protocol code should use the safe API in :mod:`securefl.secagg`.

Mapping: a value x with |x| <= clip becomes q = floor(x * scale + u) with u
uniform in [0, 1) from the OS CSPRNG (stochastic rounding: E[q] = x * scale,
so rounding adds no bias to the aggregate). ``scale`` is the power of two
with 2**(precision_bits - 1) < clip * scale <= 2**precision_bits. A power of
two makes x * scale and q / scale exact in float64, so the error bound
|q / scale - x| <= 1 / scale holds exactly, not just up to rounding.
|q| <= value_bound = floor(clip * scale) + 1. q is stored in two's complement
modulo 2**bits. A sum of ``max_summands`` such values stays within the signed
range [-(2**(bits-1) - 1), 2**(bits-1) - 1] and therefore decodes exactly;
the constructor checks this with integer arithmetic and refuses otherwise.

precision_bits is capped at 40: |x * scale| <= 2**40 leaves at least 12 bits
of every 52-bit rounding uniform in x * scale + u, so the rounding bias stays
below 2**-12 of a step (far below DP noise; float32 updates only carry 24
significant bits anyway).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from typing import TypeGuard

import numpy as np
import numpy.typing as npt

from securefl.errors import ConfigError, DataError, OverflowRefusedError, ProtocolError
from securefl.hazmat.prg import SEED_LEN, keystream_chunks

__all__ = [
    "MAX_BITS",
    "MIN_BITS",
    "QuantizationParams",
    "dequantize_sum",
    "quantize",
]

MIN_BITS = 16
MAX_BITS = 62
"""Largest ring: int64 arithmetic on 2**62 values never overflows while decoding."""

_MAX_PRECISION = 40  # see the module docstring: keeps stochastic rounding unbiased


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_clip(clip: object) -> float:
    if isinstance(clip, bool) or not isinstance(clip, int | float):
        raise ConfigError("clip must be a number")
    c = float(clip)
    if not (math.isfinite(c) and c > 0):
        raise ConfigError("clip must be finite and positive")
    return c


def _scale_and_bound(clip: float, precision_bits: int) -> tuple[float, int]:
    """The power-of-two scale for ``precision_bits`` and the largest |q| it allows."""
    mantissa, exponent = math.frexp(clip)  # clip = mantissa * 2**exponent, 0.5 <= mantissa < 1
    ceil_log2 = exponent - 1 if mantissa == 0.5 else exponent
    scale = math.ldexp(1.0, precision_bits - ceil_log2)
    return scale, math.floor(clip * scale) + 1  # clip * scale is exact: scale is 2**k


def _fits(max_summands: int, value_bound: int, bits: int) -> bool:
    """Whether ``max_summands`` values of magnitude <= value_bound sum inside the signed range."""
    return max_summands * value_bound <= (1 << (bits - 1)) - 1


@dataclass(frozen=True, kw_only=True)
class QuantizationParams:
    """Clip bound, ring size and fixed-point scale for one secure sum.

    ``precision_bits`` sets the resolution: the clip bound maps into
    (2**(precision_bits-1), 2**precision_bits], so the rounding error per value
    is at most ``1 / scale < clip / 2**(precision_bits - 1)``. Left as ``None`` it is the finest
    resolution the ring allows for ``max_summands``. Construction raises
    :class:`OverflowRefusedError` when the sum of ``max_summands`` values at
    the clip bound could leave the signed range of Z_2^bits.
    """

    clip: float
    bits: int
    max_summands: int
    precision_bits: int | None = None
    scale: float = field(init=False)
    value_bound: int = field(init=False)
    """Largest |q| a single quantized value can take."""

    def __post_init__(self) -> None:
        clip = _check_clip(self.clip)
        if not _is_int(self.bits) or not MIN_BITS <= self.bits <= MAX_BITS:
            raise ConfigError(f"bits must be an int in {MIN_BITS}..{MAX_BITS}")
        if not _is_int(self.max_summands) or self.max_summands < 1:
            raise ConfigError("max_summands must be a positive int")
        precision = self.precision_bits
        if precision is None:
            precision = _largest_precision(clip, self.max_summands, self.bits)
            if precision < 1:
                raise OverflowRefusedError(
                    f"Z_2^{self.bits} cannot hold a sum of {self.max_summands} values "
                    "at any precision; use more bits"
                )
        elif not _is_int(precision) or not 1 <= precision <= _MAX_PRECISION:
            raise ConfigError(f"precision_bits must be an int in 1..{_MAX_PRECISION}")
        scale, bound = _scale_and_bound(clip, precision)
        if not _fits(self.max_summands, bound, self.bits):
            raise OverflowRefusedError(
                f"a sum of {self.max_summands} values at {precision} bits of precision "
                f"could wrap Z_2^{self.bits}; use more bits, fewer summands or less precision"
            )
        object.__setattr__(self, "clip", clip)
        object.__setattr__(self, "precision_bits", precision)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "value_bound", bound)

    @property
    def dtype(self) -> np.dtype[np.unsignedinteger]:
        """``uint32`` for rings up to 2**32, else ``uint64``."""
        return np.dtype(np.uint32) if self.bits <= 32 else np.dtype(np.uint64)

    @property
    def modulus_mask(self) -> int:
        """2**bits - 1: AND with it to reduce modulo the ring."""
        return (1 << self.bits) - 1

    @classmethod
    def for_sum(
        cls,
        *,
        clip: float,
        max_summands: int,
        target_bits_of_precision: int | None = None,
        bits: int | None = None,
    ) -> QuantizationParams:
        """Parameters for a sum of ``max_summands`` values; give exactly one of the two knobs.

        With ``target_bits_of_precision`` the smallest safe ring is chosen
        (refused if even 2**62 is too small); with ``bits`` the finest safe
        precision for that ring.
        """
        if (target_bits_of_precision is None) == (bits is None):
            raise ConfigError("give exactly one of target_bits_of_precision and bits")
        if bits is not None:
            return cls(clip=clip, bits=bits, max_summands=max_summands)
        p = target_bits_of_precision
        if not _is_int(p) or not 1 <= p <= _MAX_PRECISION:
            raise ConfigError(f"target_bits_of_precision must be an int in 1..{_MAX_PRECISION}")
        if not _is_int(max_summands) or max_summands < 1:
            raise ConfigError("max_summands must be a positive int")
        _, bound = _scale_and_bound(_check_clip(clip), p)
        need = (max_summands * bound).bit_length() + 1  # + sign bit
        chosen = max(MIN_BITS, need)
        if chosen > MAX_BITS:
            raise OverflowRefusedError(
                f"a sum of {max_summands} values at {p} bits of precision needs "
                f"{chosen} bits, more than {MAX_BITS}"
            )
        return cls(clip=clip, bits=chosen, max_summands=max_summands, precision_bits=p)


def _largest_precision(clip: float, max_summands: int, bits: int) -> int:
    p = min(_MAX_PRECISION, bits)
    while p >= 1 and not _fits(max_summands, _scale_and_bound(clip, p)[1], bits):
        p -= 1
    return p


def _check_input(
    x: npt.NDArray[np.floating], params: QuantizationParams
) -> npt.NDArray[np.float64]:
    if not isinstance(params, QuantizationParams):
        raise ConfigError("params must be QuantizationParams")
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise DataError("quantize takes a floating-point numpy array")
    xf = x.astype(np.float64, copy=False)
    if xf.size:
        # Two reductions and no temporary arrays: NaN propagates through min
        # and max, and an infinity is their result whenever one is present.
        lo, hi = float(np.min(xf)), float(np.max(xf))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise DataError("update contains NaN or infinity")
        if lo < -params.clip or hi > params.clip:
            raise DataError(f"update has values beyond the clip bound {params.clip}")
    return xf


_MAGIC = 1.5 * 2.0**52
"""Adding it to an integral float64 t with |t| < 2**51 leaves t's two's complement
in the low mantissa bits: the bit pattern becomes 0x4338000000000000 + t."""
_MAGIC_BITS = 0x4338000000000000
_ONE_BITS = 0x3FF0000000000000  # the float64 1.0; OR-ed with 52 random bits gives [1, 2)
_LOW_WORD = 0 if sys.byteorder == "little" else 1  # the low uint32 of a uint64
_CHUNK = 1 << 16  # float64 chunks of 512 KiB: the temporaries stay in L2


def _round_chunk(
    xf: npt.NDArray[np.float64],
    params: QuantizationParams,
    u: npt.NDArray[np.float64],
    t: npt.NDArray[np.float64],
    out: npt.NDArray[np.unsignedinteger],
) -> None:
    """out = floor(xf * scale + u) mod 2**bits, through the scratch ``t``; ``u`` is kept.

    The float operations are exactly those of the definition (x * scale is
    exact, then one rounded addition, then floor), so known answers do not
    depend on the path. |q| <= value_bound <= 2**40 + 1 < 2**51, so the
    integer conversion is one addition of :data:`_MAGIC` and a reinterpretation
    of the bits, without a (slow, unvectorized) float-to-int cast.
    """
    np.multiply(xf, params.scale, out=t)
    np.add(t, u, out=t)
    np.floor(t, out=t)
    np.add(t, _MAGIC, out=t)
    bits = t.view(np.uint64)
    if out.dtype == np.uint32:  # the low word holds t mod 2**32
        low = bits.view(np.uint32)[_LOW_WORD::2]
        np.bitwise_and(low, np.uint32(params.modulus_mask), out=out)
    else:
        np.subtract(bits, np.uint64(_MAGIC_BITS), out=out)
        np.bitwise_and(out, np.uint64(params.modulus_mask), out=out)


def _quantize_from_parts(
    x: npt.NDArray[np.floating],
    params: QuantizationParams,
    uniforms: npt.NDArray[np.float64],
) -> npt.NDArray[np.unsignedinteger]:
    """:func:`quantize` with given rounding uniforms in [0, 1). Known-answer tests only."""
    xf = _check_input(x, params)
    u = np.asarray(uniforms, dtype=np.float64)
    if u.shape != xf.shape or not ((u >= 0) & (u < 1)).all():
        raise ConfigError("uniforms must match x in shape and lie in [0, 1)")
    flat = np.ascontiguousarray(xf).reshape(-1)
    out = np.empty(flat.size, dtype=params.dtype)
    _round_chunk(flat, params, np.ascontiguousarray(u).reshape(-1), np.empty(flat.size), out)
    return out.reshape(xf.shape)


def quantize(
    x: npt.NDArray[np.floating], params: QuantizationParams
) -> npt.NDArray[np.unsignedinteger]:
    """Map floats in [-clip, clip] to Z_2^bits with unbiased CSPRNG stochastic rounding.

    Raises :class:`DataError` for NaN, infinities and values beyond ``clip``
    (clip first, in the DP layer: silently clamping here would change the
    sensitivity the privacy accounting assumed).

    The rounding uniforms come from AES-256-CTR under a fresh ``os.urandom``
    key, used once and dropped (the CTR-DRBG construction: as unpredictable as
    ``os.urandom`` and far faster for millions of values). Each 64-bit word
    gives u = k / 2**52 with k its top 52 bits, made by OR-ing them under the
    exponent of 1.0 (a float in [1, 2)) and subtracting 1, both exact. The
    vector is processed in cache-sized chunks from one keystream, so no
    full-length temporary is ever allocated besides the result.
    """
    xf = _check_input(x, params)
    flat = np.ascontiguousarray(xf).reshape(-1)
    out = np.empty(flat.size, dtype=params.dtype)
    t = np.empty(min(_CHUNK, flat.size))
    start = 0
    for words in keystream_chunks(os.urandom(SEED_LEN), flat.size, np.uint64, chunk_elems=_CHUNK):
        m = words.size
        np.right_shift(words, np.uint64(12), out=words)
        np.bitwise_or(words, np.uint64(_ONE_BITS), out=words)
        u = words.view(np.float64)
        np.subtract(u, 1.0, out=u)
        _round_chunk(flat[start : start + m], params, u, t[:m], out[start : start + m])
        start += m
    return out.reshape(xf.shape)


def dequantize_sum(
    total: npt.NDArray[np.unsignedinteger], params: QuantizationParams, *, summands: int
) -> npt.NDArray[np.float64]:
    """Decode a ring sum of ``summands`` quantized vectors back to float64.

    Refuses ``summands > max_summands`` (:class:`OverflowRefusedError`: the sum
    may have wrapped). A decoded value beyond what ``summands`` honest values
    can reach raises :class:`ProtocolError`: masks did not cancel or an input
    was not quantized with these parameters.
    """
    if not isinstance(params, QuantizationParams):
        raise ConfigError("params must be QuantizationParams")
    if not _is_int(summands) or summands < 1:
        raise ConfigError("summands must be a positive int")
    if summands > params.max_summands:
        raise OverflowRefusedError(
            f"{summands} summands exceed max_summands={params.max_summands}: "
            "the sum may have wrapped"
        )
    if not isinstance(total, np.ndarray) or total.dtype not in (np.uint32, np.uint64):
        raise DataError("total must be a uint32 or uint64 numpy array")
    signed = _sign_extend(total, params.bits)
    bound = summands * params.value_bound
    if signed.size and (int(np.min(signed)) < -bound or int(np.max(signed)) > bound):
        raise ProtocolError("decoded sum is out of range: masks did not cancel")
    out = signed.astype(np.float64)
    np.divide(out, params.scale, out=out)  # exact: scale is a power of two
    return out


def _sign_extend(
    total: npt.NDArray[np.unsignedinteger], bits: int
) -> npt.NDArray[np.signedinteger]:
    """Two's complement value of the low ``bits`` bits, as a new int32 or int64 array.

    Shifting the ring element to the top of the word and back with an
    arithmetic shift both reduces modulo 2**bits and sign-extends, in one
    copy and one in-place pass.
    """
    if total.dtype == np.uint32 and bits <= 32:
        t32: npt.NDArray[np.int32] = np.left_shift(total, np.uint32(32 - bits)).view(np.int32)
        np.right_shift(t32, np.int32(32 - bits), out=t32)
        return t32
    wide: npt.NDArray[np.uint64] = total.astype(np.uint64)
    t64: npt.NDArray[np.int64] = np.left_shift(wide, np.uint64(64 - bits)).view(np.int64)
    np.right_shift(t64, np.int64(64 - bits), out=t64)
    return t64
