"""Stage names, payload encoding with strict decoding, and the bytes that get signed.

Every payload is a msgpack map with a version ``v`` and exactly the expected
fields; decoding checks types, lengths and counts before any cryptography
runs, so garbage is a :class:`~securefl.errors.WireError` and nothing else.
Signatures, commitments, share keys and associated data all bind the
federation and the round id, so nothing carries over between rounds. A key
advert also signs the digest of the round start its site received (model,
parameter spec, cohort and settings), so every site learns, before it shares
anything, whether all the others were given the same round.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import numpy.typing as npt

from securefl.errors import ConfigError, WireError
from securefl.hazmat.bls import BLS_SIGNATURE_LEN
from securefl.hazmat.sign import SIGNATURE_LEN, signed_message
from securefl.wire import MAX_ENVELOPE_BYTES, Limits, pack, unpack

__all__ = [
    "ADVERTISE",
    "CONSISTENCY",
    "CONSISTENCY_REQUEST",
    "MASKED_INPUT",
    "MASKED_INPUT_REQUEST",
    "SHARE",
    "SHARE_REQUEST",
    "UNMASK",
    "UNMASK_REQUEST",
    "VERSION",
    "advert_message",
    "commit_self_seed",
    "consistency_message",
    "decode",
    "decode_limits",
    "encode",
    "neighbourhood_list_message",
    "pack_members",
    "pack_ring",
    "unpack_members",
    "unpack_ring",
]

VERSION = 2
# site -> server
ADVERTISE = "mask/advertise"
SHARE = "mask/share"
MASKED_INPUT = "mask/masked-input"
CONSISTENCY = "mask/consistency"
UNMASK = "mask/unmask"
# server -> site
SHARE_REQUEST = "mask/share-request"
MASKED_INPUT_REQUEST = "mask/masked-input-request"
CONSISTENCY_REQUEST = "mask/consistency-request"
UNMASK_REQUEST = "mask/unmask-request"

KEY_LEN = 32
DIGEST_LEN = 32
SHARE_CT_LEN = 12 + 2 * 66 + 16  # nonce || (s-share || b-share) || tag
_MAX_ID = 256


def advert_message(
    federation: str,
    round_id: int,
    site: str,
    c_pk: bytes,
    s_pk: bytes,
    commit: bytes,
    digest: bytes,
) -> bytes:
    """What a site signs for its key advert.

    Both public keys, its self-mask commitment and the digest of the round
    start it received: a server that gave one site another model or other
    settings (to isolate its update) is caught before any share is made.
    """
    return signed_message(
        "securefl/mask/advert/v2", federation, round_id, site, c_pk, s_pk, commit, digest
    )


def consistency_message(
    federation: str, round_id: int, survivors: tuple[str, ...], *, run: str
) -> bytes:
    """What a site signs in the consistency round: the sorted survivor list, in its run.

    The run id is signed too: a round is named by (federation, run, round),
    and a server that claims a restart (a new run id) has a site mask under
    the same round number again. A signature without the run would count in
    that second round, and a server could collect a quorum over each of two
    lists in two claimed runs and then show them to two parts of the ring.
    """
    return signed_message("securefl/mask/consistency/v2", federation, round_id, run, *survivors)


def neighbourhood_list_message(
    federation: str, round_id: int, survivors: tuple[str, ...], *, run: str, round_digest: bytes
) -> bytes:
    """What a site signs with its BLS key in the neighbourhood round: the list *and* the
    digest of the round start it received.

    In the cohort-wide round every site sees every advert, each signing the
    round start its site received, so two parts of the cohort given two
    round starts (another model, another cohort) are caught by every site.
    In the neighbourhood round a site sees its holders' adverts only; with
    the digest in the signed list, signatures made under one round start do
    not count under another, so a server that gives two parts of the cohort
    two round starts needs n - m signers in each part, as for two lists.
    """
    if len(round_digest) != DIGEST_LEN:
        raise ConfigError("the round-start digest is 32 bytes")
    return signed_message(
        "securefl/mask/neighbourhood-list/v1", federation, round_id, run, round_digest, *survivors
    )


def commit_self_seed(federation: str, round_id: int, site: str, seed: bytes) -> bytes:
    """SHA-256 commitment to a self-mask seed, checked after reconstruction."""
    return hashlib.sha256(
        signed_message("securefl/mask/self-seed-commit/v1", federation, round_id, site, seed)
    ).digest()


# -- strict field checks ------------------------------------------------------


def _bytes(v: Any, n: int, what: str) -> bytes:
    if not isinstance(v, bytes) or len(v) != n:
        raise WireError(f"{what} must be {n} bytes")
    return v


def _id(v: Any) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= _MAX_ID:
        raise WireError("site ids must be non-empty strings")
    return v


def _ids(v: Any, limit: int) -> list[str]:
    if not isinstance(v, list) or len(v) > limit:
        raise WireError("expected a bounded list of site ids")
    return [_id(x) for x in v]


def _members(v: Any, limit: int) -> list[str] | bytes:
    """A survivor list: site ids (cohort-wide round) or a cohort bitmap (neighbourhood round)."""
    if isinstance(v, bytes):
        if len(v) != -(-limit // 8):
            raise WireError("a member bitmap must have one bit per cohort site")
        return v
    return _ids(v, limit)


def pack_members(cohort: tuple[str, ...], ids: list[str] | tuple[str, ...]) -> bytes:
    """One bit per cohort site, in cohort order: a cohort-wide list in n/8 bytes.

    The neighbourhood round sends every site the whole survivor list it signs
    (a site can then count the cohort-wide missing), and a bitmap keeps that
    O(n) *bits*, 125 bytes at n = 1,000, instead of O(n) ids.
    """
    chosen = set(ids)
    bits = np.array([s in chosen for s in cohort], dtype=bool)
    return np.packbits(bits, bitorder="little").tobytes()


def unpack_members(cohort: tuple[str, ...], data: bytes) -> list[str]:
    """Inverse of :func:`pack_members`; refuses a wrong length or bits past the cohort."""
    if len(data) != -(-len(cohort) // 8):
        raise WireError("a member bitmap must have one bit per cohort site")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    if bits[len(cohort) :].any():
        raise WireError("a member bitmap sets bits past the cohort")
    return [s for s, b in zip(cohort, bits[: len(cohort)], strict=False) if b]


def _map(v: Any, limit: int, value_len: int, what: str) -> dict[str, bytes]:
    if not isinstance(v, dict) or len(v) > limit:
        raise WireError(f"{what} must be a bounded map")
    return {_id(k): _bytes(x, value_len, what) for k, x in v.items()}


_SCHEMAS: dict[str, set[str]] = {
    ADVERTISE: {"c_pk", "s_pk", "commit", "digest", "sig"},
    SHARE: {"shares"},
    MASKED_INPUT: {"bits", "n", "y"},
    CONSISTENCY: {"sig"},
    UNMASK: {"b", "s"},
    SHARE_REQUEST: {"adverts"},
    MASKED_INPUT_REQUEST: {"senders", "shares"},
    CONSISTENCY_REQUEST: {"survivors"},
    UNMASK_REQUEST: {"survivors", "dropped", "signatures"},
}
# The neighbourhood round proves the cohort-wide count with one BLS aggregate
# (securefl.secagg._multisig): the signers as a cohort bitmap and the aggregate.
UNMASK_REQUEST_AGGREGATE = {"survivors", "dropped", "signers", "aggregate"}


# On the k-regular graph a masked input carries the site's signed "masked with"
# claim and an unmask request the claims of the peers whose b-shares the site
# holds (securefl.secagg._masked_with).
_OPTIONAL = {MASKED_INPUT: "masked_with", UNMASK_REQUEST: "peers"}


def _schema_ok(stage: str, names: set[str]) -> bool:
    optional = _OPTIONAL.get(stage)
    if optional is not None:
        names = names - {optional}
    if names == _SCHEMAS[stage]:
        return True
    return stage == UNMASK_REQUEST and names == UNMASK_REQUEST_AGGREGATE


def _claim(v: Any) -> bytes:
    if not isinstance(v, bytes) or not SIGNATURE_LEN < len(v) <= _SMALL_BIN:
        raise WireError("a masked-with claim is a bitmap and a signature")
    return v


def encode(stage: str, **fields: Any) -> bytes:
    """A versioned payload for ``stage``."""
    if not _schema_ok(stage, set(fields)):
        raise WireError(f"wrong fields for {stage}")
    return pack({"v": VERSION, **fields})


def _advert(v: Any) -> dict[str, bytes]:
    if not isinstance(v, dict) or set(v) != _SCHEMAS[ADVERTISE]:
        raise WireError("malformed key advert")
    return {
        "c_pk": _bytes(v["c_pk"], KEY_LEN, "c_pk"),
        "s_pk": _bytes(v["s_pk"], KEY_LEN, "s_pk"),
        "commit": _bytes(v["commit"], 32, "commit"),
        "digest": _bytes(v["digest"], DIGEST_LEN, "round-start digest"),
        "sig": _bytes(v["sig"], SIGNATURE_LEN, "sig"),
    }


def _dec_masked_input(obj: dict[str, Any], n: int) -> dict[str, Any]:
    if not isinstance(obj["bits"], int) or not isinstance(obj["n"], int):
        raise WireError("masked input needs integer bits and n")
    extra = {"masked_with": _claim(obj["masked_with"])} if "masked_with" in obj else {}
    if not isinstance(obj["y"], bytes):
        raise WireError("masked input body must be bytes")
    return {"bits": obj["bits"], "n": obj["n"], "y": obj["y"], **extra}


def _dec_share_request(obj: dict[str, Any], n: int) -> dict[str, Any]:
    adverts = obj["adverts"]
    if not isinstance(adverts, dict) or len(adverts) > n:
        raise WireError("adverts must be a bounded map")
    return {"adverts": {_id(k): _advert(v) for k, v in adverts.items()}}


def _signature(v: Any) -> bytes:
    """A consistency signature: Ed25519 (cohort-wide round) or BLS (neighbourhood round)."""
    if isinstance(v, bytes) and len(v) == BLS_SIGNATURE_LEN:
        return v
    return _bytes(v, SIGNATURE_LEN, "signature")


def _dec_unmask_request(obj: dict[str, Any], n: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "survivors": _members(obj["survivors"], n),
        "dropped": _ids(obj["dropped"], n),
    }
    if "aggregate" in obj:
        signers = obj["signers"]
        if not isinstance(signers, bytes) or len(signers) != (n + 7) // 8:
            raise WireError("the signer list must be a cohort bitmap")
        out["signers"] = signers
        out["aggregate"] = _bytes(obj["aggregate"], BLS_SIGNATURE_LEN, "aggregate signature")
    else:
        out["signatures"] = _map(obj["signatures"], n, SIGNATURE_LEN, "signature")
    if "peers" in obj:
        peers = obj["peers"]
        if not isinstance(peers, dict) or len(peers) > n:
            raise WireError("the peers' claims must be a bounded map")
        out["peers"] = {_id(k): _claim(v) for k, v in peers.items()}
    return out


_DECODERS: dict[str, Any] = {
    ADVERTISE: lambda o, n: _advert({k: v for k, v in o.items() if k != "v"}),
    SHARE: lambda o, n: {"shares": _map(o["shares"], n, SHARE_CT_LEN, "share ciphertext")},
    MASKED_INPUT: _dec_masked_input,
    CONSISTENCY: lambda o, n: {"sig": _signature(o["sig"])},
    UNMASK: lambda o, n: {"b": _map(o["b"], n, 66, "share"), "s": _map(o["s"], n, 66, "share")},
    SHARE_REQUEST: _dec_share_request,
    MASKED_INPUT_REQUEST: lambda o, n: {
        "senders": _ids(o["senders"], n),
        "shares": _map(o["shares"], n, SHARE_CT_LEN, "share ciphertext"),
    },
    CONSISTENCY_REQUEST: lambda o, n: {"survivors": _members(o["survivors"], n)},
    UNMASK_REQUEST: _dec_unmask_request,
}


# Decode limits: values per cohort member (a map entry is two values, an
# advert map nine more) and the longest byte string of each stage. The slack
# (``_FIXED_VALUES``, values per member rounded up) leaves room for a field or
# two without retuning; only MASKED_INPUT carries a large byte string.
_FIXED_VALUES = 32
_SMALL_BIN = 4096
_VALUES_PER_SITE: dict[str, int] = {
    ADVERTISE: 0,
    SHARE: 4,
    MASKED_INPUT: 0,
    CONSISTENCY: 0,
    UNMASK: 8,
    SHARE_REQUEST: 16,
    MASKED_INPUT_REQUEST: 8,
    CONSISTENCY_REQUEST: 2,
    UNMASK_REQUEST: 10,
}


def decode_limits(stage: str, cohort_size: int) -> Limits:
    """What a ``stage`` payload may hold in a cohort of ``cohort_size``: checked before decoding.

    Sized so a hostile payload costs at most its own bytes plus a few hundred
    bytes per cohort member, whatever it is made of (docs/wire.md).
    """
    n = max(int(cohort_size), 0)
    return Limits(
        max_items=_FIXED_VALUES + _VALUES_PER_SITE[stage] * n,
        max_depth=3,
        max_array_len=n,
        max_map_len=max(n, 16),
        max_str_len=_MAX_ID,
        max_bin_len=MAX_ENVELOPE_BYTES if stage == MASKED_INPUT else _SMALL_BIN,
    )


def decode(stage: str, payload: bytes, *, cohort_size: int) -> dict[str, Any]:
    """Strictly decode a payload of ``stage``; ``cohort_size`` bounds every list and map."""
    if stage not in _DECODERS:
        raise WireError(f"unknown stage {stage!r}")
    obj = unpack(payload, limits=decode_limits(stage, cohort_size))
    if not isinstance(obj, dict) or not _schema_ok(stage, set(obj) - {"v"}) or "v" not in obj:
        raise WireError(f"malformed {stage} payload")
    if obj["v"] != VERSION:
        raise WireError(f"unsupported {stage} version {obj['v']!r}")
    out: dict[str, Any] = _DECODERS[stage](obj, cohort_size)
    return out


# -- ring vectors on the wire -------------------------------------------------


def ring_bytes(bits: int) -> int:
    """Bytes per ring element on the wire: ceil(bits / 8), so 16 bits travel as 2 bytes."""
    return -(-bits // 8)


def pack_ring(values: npt.NDArray[np.uint32], bits: int) -> bytes:
    """Little-endian, ``ring_bytes(bits)`` bytes per element (byte-level bit-packing).

    The 3-byte case copies the three low bytes of each word as three strided
    byte columns: NumPy moves one column at a time far faster than it copies
    rows of three bytes (``[:, :3].tobytes()`` was the site's largest cost
    after the keystream).
    """
    width = ring_bytes(bits)
    le = np.ascontiguousarray(values, dtype="<u4")
    if width == 4:
        return le.tobytes()
    if width == 2:
        return le.astype("<u2").tobytes()
    n = le.size
    src = le.view(np.uint8).reshape(n, 4)
    dst = np.empty((n, width), dtype=np.uint8)
    for col in range(width):
        dst[:, col] = src[:, col]
    return dst.tobytes()


def unpack_ring(
    data: bytes, n: int, bits: int, *, out: npt.NDArray[np.uint32] | None = None
) -> npt.NDArray[np.uint32]:
    """Inverse of :func:`pack_ring`; refuses a wrong length or values outside Z_2^bits.

    With ``out`` (a C-contiguous uint32 array of ``n`` elements) the values
    are decoded into it and it is returned: a server decoding one vector per
    site reuses one buffer instead of allocating (and page-faulting) a fresh
    one each time. On a refusal its contents are unspecified.
    """
    width = ring_bytes(bits)
    if len(data) != n * width:
        raise WireError(f"masked input has {len(data)} bytes, expected {n * width}")
    if out is None:
        out = np.empty(n, dtype=np.uint32)
    elif out.shape != (n,) or out.dtype != np.uint32 or not out.flags.c_contiguous:
        raise ConfigError("out must be a C-contiguous uint32 array of n elements")
    if width == 4:
        np.copyto(out, np.frombuffer(data, dtype="<u4"))
    elif width == 2:
        np.copyto(out, np.frombuffer(data, dtype="<u2"))
    elif n:
        # A view reading 4 bytes at a stride of 3: element i < n - 1 ends at
        # byte 3i + 4 <= 3n, so it stays inside ``data`` (no padded copy);
        # the last element, whose fourth byte would lie past the end, is
        # read on its own. Masking keeps the low 24 bits.
        wide = np.ndarray(shape=(n - 1,), dtype="<u4", buffer=data, strides=(width,))
        np.bitwise_and(wide, np.uint32(0xFFFFFF), out=out[:-1])
        out[-1] = int.from_bytes(data[-width:], "little")
    if bits < 32 and out.size and int(out.max()) >> bits:
        raise WireError(f"masked input has values outside Z_2^{bits}")
    return out
