"""The envelope every protocol message travels in, and safe array encoding.

Transports move envelopes and know nothing of their payloads; payloads are
msgpack maps whose arrays are raw little-endian bytes. Nothing here ever
unpickles: decoding is strict (known version, known fields, size limits), so
bad bytes from the network give a :class:`~securefl.errors.WireError` and no
code runs.

Why decoding is bounded *before* any object is built: msgpack turns one byte
into one Python object (an empty list costs 72 bytes of memory, a one-entry
map about 230), so a 20 MB message of tiny arrays grows a process by more
than a gigabyte before any field check could refuse it. Every decode here
first walks the bytes (:func:`scan`, no allocation) and refuses them unless
they fit the caller's :class:`Limits`: the number of values, the nesting
depth, and each array, map, string and byte string. Only then does msgpack
build the objects, with the same per-container limits. The memory a decode
takes is then at most about twice the message (the byte strings it copies)
plus ``max_items`` small objects; docs/wire.md gives the numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt

from securefl.errors import WireError

__all__ = [
    "ENVELOPE_LIMITS",
    "ENVELOPE_VERSION",
    "MAX_ENVELOPE_BYTES",
    "MAX_NAME_LEN",
    "MAX_ROUND",
    "PAYLOAD_LIMITS",
    "SERVER",
    "Envelope",
    "EnvelopeHeader",
    "Limits",
    "array_from_wire",
    "array_to_wire",
    "bin_header",
    "pack",
    "scan",
    "unpack",
]

ENVELOPE_VERSION = 1
#: The largest envelope we accept: a 64M-parameter float32 model plus headroom.
MAX_ENVELOPE_BYTES = 300 * 1024 * 1024
#: The receiver name of the coordinating server.
SERVER = "server"
#: The longest federation, stage or party name an envelope may carry.
MAX_NAME_LEN = 256

#: The largest round id on the wire: 2**53 - 1, exact in every JSON reader (records carry
#: round ids) and far inside SQLite's signed 64-bit integers (the ledger keys on them).
MAX_ROUND = 2**53 - 1
_ENVELOPE_FIELDS = ("v", "federation", "round", "stage", "sender", "receiver", "payload")
_ALLOWED_DTYPES = {"<f4", "<f8", "<u4", "<u8", "<i8", "<u1", "<u2", "|u1"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How much structure one decode may build; anything beyond is a :class:`WireError`.

    ``max_items`` counts every value, map keys included (``{"a": [1, 2]}`` is
    five: the map, the key, the array and its two numbers). ``max_depth`` is
    how many containers may enclose a value (a flat map is depth 1). Byte
    strings are the one thing allowed to be large: they cost their length,
    not a Python object per byte.
    """

    max_bytes: int = MAX_ENVELOPE_BYTES
    max_items: int = 16_384
    max_depth: int = 8
    max_array_len: int = 16_384
    max_map_len: int = 1_024
    max_str_len: int = 4_096
    max_bin_len: int = MAX_ENVELOPE_BYTES

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Limits.{f.name} must be a non-negative integer, got {value!r}")

    def tightened(self, **lower: int) -> Limits:
        """These limits with some fields lowered (never raised)."""
        return replace(self, **{k: min(v, getattr(self, k)) for k, v in lower.items()})


#: A flat map of seven fields: six short names and numbers, and one payload.
ENVELOPE_LIMITS = Limits(
    max_items=1 + 2 * len(_ENVELOPE_FIELDS),
    max_depth=1,
    max_array_len=0,
    max_map_len=len(_ENVELOPE_FIELDS),
    max_str_len=MAX_NAME_LEN,
)
#: What a payload decoder that does not say otherwise accepts. 16,384 values
#: hold any legitimate securefl payload (an HE update of a 300 MB envelope
#: has under 3,000 ciphertext chunks); at the worst cost per value (a
#: one-entry map, about 230 bytes) they are under 4 MiB of objects.
PAYLOAD_LIMITS = Limits()

# msgpack type bytes: (bytes of length or value that follow, kind)
_HEADERS: dict[int, tuple[int, str]] = {
    0xC4: (1, "bin"), 0xC5: (2, "bin"), 0xC6: (4, "bin"),
    0xCA: (4, "fixed"), 0xCB: (8, "fixed"),
    0xCC: (1, "fixed"), 0xCD: (2, "fixed"), 0xCE: (4, "fixed"), 0xCF: (8, "fixed"),
    0xD0: (1, "fixed"), 0xD1: (2, "fixed"), 0xD2: (4, "fixed"), 0xD3: (8, "fixed"),
    0xD9: (1, "str"), 0xDA: (2, "str"), 0xDB: (4, "str"),
    0xDC: (2, "array"), 0xDD: (4, "array"),
    0xDE: (2, "map"), 0xDF: (4, "map"),
}  # fmt: skip
_LIMIT_OF = {
    "str": "max_str_len",
    "bin": "max_bin_len",
    "array": "max_array_len",
    "map": "max_map_len",
}


def _header(b: int, data: bytes, pos: int) -> tuple[str, int, int]:
    """The kind of the value whose type byte ``b`` was at ``pos - 1``, its length, new pos."""
    if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
        return "fixed", 0, pos
    if b <= 0x8F:
        return "map", b & 0x0F, pos
    if b <= 0x9F:
        return "array", b & 0x0F, pos
    if b <= 0xBF:
        return "str", b & 0x1F, pos
    if b not in _HEADERS:  # 0xc1 (never used) and the ext types
        raise WireError(f"malformed message: msgpack type 0x{b:02x} is not accepted")
    width, kind = _HEADERS[b]
    if pos + width > len(data):
        raise WireError("malformed message: truncated")
    if kind == "fixed":
        return kind, 0, pos + width
    return kind, int.from_bytes(data[pos : pos + width], "big"), pos + width


def scan(data: bytes, limits: Limits) -> list[int]:
    """Walk one msgpack value without building it; refuse it unless it fits ``limits``.

    Costs no memory beyond a stack of depth ``max_depth`` and time at most
    proportional to ``max_items``, however the bytes are crafted. Also
    refuses extension types, truncation and trailing bytes. Returns the
    offsets where each direct child of the top-level container starts (map
    keys and values alternate), which lets a caller read some fields before
    copying others.
    """
    pos, items = 0, 0
    remaining = [1]  # values still expected in each open container
    starts: list[int] = []
    while remaining:
        if remaining[-1] == 0:
            remaining.pop()
            continue
        remaining[-1] -= 1
        items += 1
        if items > limits.max_items:
            raise WireError(f"message holds more than {limits.max_items} values")
        if len(remaining) == 2:
            starts.append(pos)
        pos = _step(data, pos, limits, remaining)
    if pos != len(data):
        raise WireError("malformed message: trailing bytes after the value")
    return starts


def _step(data: bytes, pos: int, limits: Limits, remaining: list[int]) -> int:
    """Skip the value at ``pos`` (or open it, if a container); return the next position."""
    if pos >= len(data):
        raise WireError("malformed message: truncated")
    kind, n, pos = _header(data[pos], data, pos + 1)
    if kind == "fixed":
        return pos
    if n > getattr(limits, _LIMIT_OF[kind]):
        raise WireError(f"message holds a {kind} of length {n}, over its limit")
    if kind in ("str", "bin"):
        if pos + n > len(data):
            raise WireError("malformed message: truncated")
        return pos + n
    if len(remaining) > limits.max_depth:
        raise WireError(f"message is nested deeper than {limits.max_depth}")
    remaining.append(2 * n if kind == "map" else n)
    return pos


def _check_size(data: Any, max_bytes: int) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError("expected bytes")
    if len(data) > max_bytes:
        raise WireError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    return data if isinstance(data, bytes) else bytes(data)


def _unpackb(data: bytes, limits: Limits) -> Any:
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_bin_len,
            max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len,
            max_ext_len=0,
        )
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        # UnicodeDecodeError (bad UTF-8) and unhashable map keys are ValueErrors here too
        raise WireError(f"malformed message: {exc}") from None
    except TypeError as exc:  # a map key that is neither str nor bytes
        raise WireError(f"malformed message: {exc}") from None


def bin_header(size: int) -> bytes:
    """The msgpack header of a ``bin`` of ``size`` bytes (what ``pack`` writes before them)."""
    if size < 1 << 8:
        return bytes([0xC4, size])
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    if size < 1 << 32:
        return b"\xc6" + size.to_bytes(4, "big")
    raise WireError("a bin holds at most 2**32 - 1 bytes")


def pack(obj: Any) -> bytes:
    """msgpack-encode plain data (dicts, lists, str, bytes, numbers)."""
    packed = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def unpack(data: bytes, *, limits: Limits = PAYLOAD_LIMITS, max_bytes: int | None = None) -> Any:
    """msgpack-decode within ``limits`` (checked before anything is built); never executes."""
    if max_bytes is not None:
        limits = limits.tightened(max_bytes=max_bytes)
    raw = _check_size(data, limits.max_bytes)
    scan(raw, limits)
    return _unpackb(raw, limits)


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvelopeHeader:
    """Everything in an envelope but its payload, and the payload's size."""

    federation: str
    round: int
    stage: str
    sender: str
    receiver: str
    payload_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """One message: who sends what to whom, in which round and protocol stage."""

    federation: str
    round: int
    stage: str
    sender: str
    receiver: str
    payload: bytes

    @property
    def header(self) -> EnvelopeHeader:
        """The header fields, as :meth:`from_bytes` checks them."""
        return EnvelopeHeader(
            federation=self.federation,
            round=self.round,
            stage=self.stage,
            sender=self.sender,
            receiver=self.receiver,
            payload_size=len(self.payload),
        )

    def to_bytes(self) -> bytes:
        """Encode as a versioned msgpack map, fields in a fixed order, payload last."""
        return self.head() + self.payload

    def head(self) -> bytes:
        """The encoding's bytes before the payload: ``to_bytes() == head() + payload``.

        A large payload can then be framed or sent without another copy
        (:func:`securefl.transport.signed.seal` joins the parts once).
        """
        packer = msgpack.Packer(use_bin_type=True)
        return b"".join(
            [
                packer.pack_map_header(len(_ENVELOPE_FIELDS)),
                packer.pack("v"),
                packer.pack(ENVELOPE_VERSION),
                packer.pack("federation"),
                packer.pack(self.federation),
                packer.pack("round"),
                packer.pack(self.round),
                packer.pack("stage"),
                packer.pack(self.stage),
                packer.pack("sender"),
                packer.pack(self.sender),
                packer.pack("receiver"),
                packer.pack(self.receiver),
                packer.pack("payload"),
                bin_header(len(self.payload)),
            ]
        )

    @classmethod
    def from_bytes(
        cls,
        data: bytes | memoryview,
        *,
        max_bytes: int = MAX_ENVELOPE_BYTES,
        check: Callable[[EnvelopeHeader], None] | None = None,
    ) -> Envelope:
        """Decode strictly; anything unexpected is a :class:`WireError`.

        The header is decoded and checked first (version, types, then
        ``check``, which may refuse the federation, round, stage, parties or
        payload size by raising); only then is the payload copied out. A
        ``memoryview`` (a frame's inner envelope) is read in place: the
        payload is the one copy made.
        """
        if isinstance(data, memoryview):
            if data.format != "B" or data.ndim != 1:
                raise WireError("expected bytes")
            if len(data) > max_bytes:
                raise WireError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
            raw: Any = data
        else:
            raw = _check_size(data, max_bytes)
        starts = scan(raw, ENVELOPE_LIMITS.tightened(max_bin_len=max_bytes))
        if not raw or raw[0] != 0x80 | len(_ENVELOPE_FIELDS):
            raise WireError("not an envelope: expected a map of its seven fields")
        bounds = [*starts, len(raw)]
        values: dict[str, Any] = {}
        for i, name in enumerate(_ENVELOPE_FIELDS):
            key_at, value_at, value_end = bounds[2 * i], bounds[2 * i + 1], bounds[2 * i + 2]
            if _unpackb(raw[key_at:value_at], ENVELOPE_LIMITS) != name:
                raise WireError("not an envelope: unexpected, missing or reordered fields")
            if name != "payload":
                # a header field is a short str (str8/str16 header and the name) or an int
                if value_end - value_at > 3 + MAX_NAME_LEN:
                    raise WireError(f"envelope field {name!r} is too long")
                values[name] = _unpackb(raw[value_at:value_end], ENVELOPE_LIMITS)
        header = _check_header(values, payload_at=value_at, payload_end=value_end, raw=raw)
        if check is not None:
            check(header)
        payload = bytes(raw[value_end - header.payload_size : value_end])  # the one copy
        return cls(
            federation=header.federation,
            round=header.round,
            stage=header.stage,
            sender=header.sender,
            receiver=header.receiver,
            payload=payload,
        )


def _check_header(
    values: dict[str, Any], *, payload_at: int, payload_end: int, raw: bytes
) -> EnvelopeHeader:
    if type(values["v"]) is not int or values["v"] != ENVELOPE_VERSION:
        raise WireError(f"unsupported envelope version {values['v']!r}")
    for name in ("federation", "stage", "sender", "receiver"):
        if not isinstance(values[name], str):
            raise WireError(f"envelope field {name!r} must be a string")
    rnd = values["round"]
    if isinstance(rnd, bool) or not isinstance(rnd, int) or not 0 <= rnd <= MAX_ROUND:
        raise WireError(f"envelope round must be an integer in [0, {MAX_ROUND}]")
    kind, size, body_at = _header(raw[payload_at], raw, payload_at + 1)
    if kind != "bin" or body_at + size != payload_end:
        raise WireError("envelope payload must be bytes")
    return EnvelopeHeader(
        federation=values["federation"],
        round=rnd,
        stage=values["stage"],
        sender=values["sender"],
        receiver=values["receiver"],
        payload_size=size,
    )


def array_to_wire(array: npt.NDArray[Any]) -> dict[str, Any]:
    """A 1-D numeric array as ``{"dtype", "n", "data"}`` with little-endian bytes."""
    arr = np.ascontiguousarray(array)
    if arr.ndim != 1:
        raise WireError("only 1-D arrays travel on the wire")
    le = arr.dtype.newbyteorder("<") if arr.dtype.byteorder not in ("|", "<") else arr.dtype
    arr = arr.astype(le, copy=False)
    if arr.dtype.str not in _ALLOWED_DTYPES:
        raise WireError(f"dtype {arr.dtype.str} is not allowed on the wire")
    return {"dtype": arr.dtype.str, "n": int(arr.shape[0]), "data": arr.tobytes()}


def array_from_wire(obj: Any, *, expected_len: int | None = None) -> npt.NDArray[Any]:
    """Inverse of :func:`array_to_wire`, checking dtype, length and byte count."""
    if not isinstance(obj, dict) or set(obj) != {"dtype", "n", "data"}:
        raise WireError("not an encoded array")
    dtype, n, data = obj["dtype"], obj["n"], obj["data"]
    if (
        not isinstance(dtype, str)
        or dtype not in _ALLOWED_DTYPES
        or isinstance(n, bool)
        or not isinstance(n, int)
        or not isinstance(data, bytes)
    ):
        raise WireError("encoded array has a bad dtype, length or body")
    dt = np.dtype(dtype)
    if n < 0 or len(data) != n * dt.itemsize:
        raise WireError("encoded array length does not match its body")
    if expected_len is not None and n != expected_len:
        raise WireError(f"expected {expected_len} values, got {n}")
    return np.frombuffer(data, dtype=dt).copy()
