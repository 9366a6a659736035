"""The envelope every protocol message travels in, and safe array encoding.

Transports move envelopes and know nothing of their payloads; payloads are
msgpack maps whose arrays are raw little-endian bytes. Nothing here ever
unpickles: decoding is strict (known version, known fields, size limits), so
bad bytes from the network give a :class:`~securefl.errors.WireError` and no
code runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt

from securefl.errors import WireError

__all__ = [
    "ENVELOPE_VERSION",
    "MAX_ENVELOPE_BYTES",
    "SERVER",
    "Envelope",
    "array_from_wire",
    "array_to_wire",
    "pack",
    "unpack",
]

ENVELOPE_VERSION = 1
#: The largest envelope we accept: a 64M-parameter float32 model plus headroom.
MAX_ENVELOPE_BYTES = 300 * 1024 * 1024
#: The receiver name of the coordinating server.
SERVER = "server"

_ENVELOPE_FIELDS = ("v", "federation", "round", "stage", "sender", "receiver", "payload")
_ALLOWED_DTYPES = {"<f4", "<f8", "<u4", "<u8", "<i8", "<u1", "<u2", "|u1"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """One message: who sends what to whom, in which round and protocol stage."""

    federation: str
    round: int
    stage: str
    sender: str
    receiver: str
    payload: bytes

    def to_bytes(self) -> bytes:
        """Encode as a versioned msgpack map."""
        packed = msgpack.packb(
            {
                "v": ENVELOPE_VERSION,
                "federation": self.federation,
                "round": self.round,
                "stage": self.stage,
                "sender": self.sender,
                "receiver": self.receiver,
                "payload": self.payload,
            },
            use_bin_type=True,
        )
        assert isinstance(packed, bytes)
        return packed

    @classmethod
    def from_bytes(cls, data: bytes, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> Envelope:
        """Decode strictly; anything unexpected is a :class:`WireError`."""
        obj = unpack(data, max_bytes=max_bytes)
        if not isinstance(obj, dict) or set(obj) != set(_ENVELOPE_FIELDS):
            raise WireError("not an envelope: unexpected or missing fields")
        if obj["v"] != ENVELOPE_VERSION:
            raise WireError(f"unsupported envelope version {obj['v']!r}")
        for name in ("federation", "stage", "sender", "receiver"):
            if not isinstance(obj[name], str):
                raise WireError(f"envelope field {name!r} must be a string")
        if not isinstance(obj["round"], int) or obj["round"] < 0:
            raise WireError("envelope round must be a non-negative integer")
        if not isinstance(obj["payload"], bytes):
            raise WireError("envelope payload must be bytes")
        return cls(
            federation=obj["federation"],
            round=obj["round"],
            stage=obj["stage"],
            sender=obj["sender"],
            receiver=obj["receiver"],
            payload=obj["payload"],
        )


def pack(obj: Any) -> bytes:
    """msgpack-encode plain data (dicts, lists, str, bytes, numbers)."""
    packed = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def unpack(data: bytes, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> Any:
    """msgpack-decode with a size limit; never executes anything."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError("expected bytes")
    if len(data) > max_bytes:
        raise WireError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        return msgpack.unpackb(bytes(data), raw=False, strict_map_key=True, max_bin_len=max_bytes)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise WireError(f"malformed message: {exc}") from None


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
    if dtype not in _ALLOWED_DTYPES or not isinstance(n, int) or not isinstance(data, bytes):
        raise WireError("encoded array has a bad dtype, length or body")
    dt = np.dtype(dtype)
    if n < 0 or len(data) != n * dt.itemsize:
        raise WireError("encoded array length does not match its body")
    if expected_len is not None and n != expected_len:
        raise WireError(f"expected {expected_len} values, got {n}")
    return np.frombuffer(data, dtype=dt).copy()
