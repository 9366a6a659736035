"""Read a chunk's framing from its bytes before TenSEAL deserializes anything.

Why: TenSEAL deserializes *every* ciphertext of a vector, each at the size
its own header declares, before any structural check can run. Three hundred
zero ciphertexts of size 16 compress to about 35 kB and decompress to
about 300 MiB: one signed upload could exhaust the server's memory. So the
bytes are read first, with no allocation beyond the chunk itself:

- the TenSEAL protobuf (``BFVVectorProto`` / ``CKKSVectorProto``): the
  ``sizes`` field holds exactly the expected value count, there is exactly
  one ``ciphertexts`` field, a scale field only in CKKS, nothing else;
- the SEAL serialization header of that ciphertext (magic, header size,
  compression mode, declared length equal to the bytes that follow);
- how large it can become when SEAL loads it: uncompressed, its length;
  zlib, inflated here into at most the bound; zstd, the frame's declared
  content size (zstd's decoder refuses a frame that regenerates more than it
  declares) and a walk over its block headers (raw and RLE blocks regenerate
  exactly their stated size, which must fit the declared one), with the frame
  required to end exactly where the ciphertext ends.

The bound is what one fresh ciphertext of the preset needs (two polynomials
of ``N`` coefficients per data prime, eight bytes each) plus SEAL's few
hundred bytes of metadata. What SEAL then loads is checked again
structurally in :mod:`securefl.he._codec` (size 2, level, scale, form).
"""

from __future__ import annotations

import struct
import zlib

from securefl.errors import WireError
from securefl.he._presets import HEPreset

__all__ = ["check_chunk_frame", "max_ciphertext_bytes"]

_SEAL_MAGIC = 0xA15E
_SEAL_HEADER = 16
_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_BLOCK_MAX = 128 * 1024
_METADATA_SLACK = 1024  # parms_id, flags, sizes, scale and the data array's own header


def max_ciphertext_bytes(preset: HEPreset) -> int:
    """The serialized (uncompressed) size of one fresh size-2 ciphertext, plus metadata slack."""
    data_primes = len(preset.coeff_mod_bit_sizes) - 1  # the special prime holds no data
    return 2 * preset.poly_modulus_degree * data_primes * 8 + _METADATA_SLACK


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(raw: bytes) -> list[tuple[int, int, bytes]]:
    """Top-level protobuf fields ``(number, wire type, value bytes)``; no nested parsing."""
    out: list[tuple[int, int, bytes]] = []
    pos = 0
    while pos < len(raw):
        key, pos = _varint(raw, pos)
        number, wire = key >> 3, key & 7
        if wire == 2:
            length, pos = _varint(raw, pos)
            end = pos + length
        elif wire == 1:
            end = pos + 8
        else:
            raise WireError(f"unexpected protobuf wire type {wire}")
        if end > len(raw):
            raise WireError("truncated protobuf field")
        out.append((number, wire, raw[pos:end]))
        pos = end
    return out


def _packed(data: bytes) -> list[int]:
    values, pos = [], 0
    while pos < len(data):
        value, pos = _varint(data, pos)
        values.append(value)
    return values


def _zstd_bound(body: bytes, bound: int) -> None:
    """Refuse a zstd frame that could inflate beyond ``bound`` or that is not one whole frame."""
    if len(body) < 6 or struct.unpack_from("<I", body)[0] != _ZSTD_MAGIC:
        raise WireError("not a zstd frame")
    fhd = body[4]
    fcs_flag, single, checksum, dict_flag = fhd >> 6, (fhd >> 5) & 1, (fhd >> 2) & 1, fhd & 3
    if fhd & 0x18 or dict_flag:
        raise WireError("zstd frame with reserved bits or a dictionary")
    pos = 5 + (0 if single else 1)
    fcs_len = (0, 2, 4, 8)[fcs_flag] if fcs_flag else (1 if single else 0)
    if not fcs_len:
        raise WireError("zstd frame without a declared content size")
    if pos + fcs_len > len(body):
        raise WireError("truncated zstd frame header")
    content = int.from_bytes(body[pos : pos + fcs_len], "little") + (256 if fcs_len == 2 else 0)
    if content > bound:
        raise WireError(f"ciphertext declares {content} bytes, above one fresh ciphertext")
    pos += fcs_len
    exact = 0  # what raw and RLE blocks regenerate; compressed ones zstd holds to the FCS
    while True:
        if pos + 3 > len(body):
            raise WireError("truncated zstd block")
        header = int.from_bytes(body[pos : pos + 3], "little")
        last, kind, size = header & 1, (header >> 1) & 3, header >> 3
        pos += 3
        if kind == 3 or size > _ZSTD_BLOCK_MAX:
            raise WireError("invalid zstd block")
        if kind != 2:
            exact += size
        pos += 1 if kind == 1 else size
        if exact > content:
            raise WireError("ciphertext would inflate beyond its declared size")
        if last:
            break
    if pos + (4 if checksum else 0) != len(body):
        raise WireError("bytes after the ciphertext's zstd frame")


def _seal_bound(ct: bytes, bound: int) -> None:
    if len(ct) < _SEAL_HEADER:
        raise WireError("truncated SEAL ciphertext")
    magic, header_size, _major, _minor, mode, _reserved, size = struct.unpack_from("<HBBBBHQ", ct)
    if magic != _SEAL_MAGIC or header_size != _SEAL_HEADER or size != len(ct):
        raise WireError("not one SEAL ciphertext")
    body = ct[_SEAL_HEADER:]
    if mode == 0:
        if len(body) > bound:
            raise WireError("ciphertext larger than one fresh ciphertext")
    elif mode == 1:
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(body, bound + 1)
        except zlib.error:
            raise WireError("corrupt zlib ciphertext") from None
        if len(out) > bound or not inflater.eof or inflater.unused_data:
            raise WireError("ciphertext would inflate beyond one fresh ciphertext")
    elif mode == 2:
        _zstd_bound(body, bound)
    else:
        raise WireError(f"unknown SEAL compression mode {mode}")


def check_chunk_frame(preset: HEPreset, raw: bytes, values: int, index: int) -> None:
    """Refuse (WireError) a chunk that is not one bounded ciphertext of ``values`` slots."""
    try:
        fields = _fields(raw)
        sizes = [f for f in fields if f[0] == 1]
        cts = [f for f in fields if f[0] == 2]
        scales = [f for f in fields if f[0] == 3]
        others = [f for f in fields if f[0] not in (1, 2, 3)]
        if len(cts) != 1 or cts[0][1] != 2:
            raise WireError(f"{len(cts)} ciphertexts, expected 1")
        if len(sizes) != 1 or sizes[0][1] != 2 or _packed(sizes[0][2]) != [values]:
            raise WireError(f"its sizes field is not [{values}]")
        want_scales = 1 if preset.scheme == "ckks" else 0
        if others or len(scales) != want_scales or any(f[1] != 1 for f in scales):
            raise WireError("unexpected fields")
        _seal_bound(cts[0][2], max_ciphertext_bytes(preset))
    except WireError as exc:
        raise WireError(
            f"chunk {index} is not one ciphertext of preset {preset.name}: {exc}"
        ) from None
