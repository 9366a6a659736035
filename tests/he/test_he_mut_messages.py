"""Must-fail vectors for the he mode's two byte formats, one field wrong at a time.

A site's update is read by the server, the aggregate by every site: each field
check is what stops a hostile peer's bytes before they reach TenSEAL or the
sum. Each case below changes exactly one field of a valid message, so a check
weakened to depend on another field (an ``or`` read as ``and``) lets the case
through and the test fails. The valid messages beside them are accepted,
so the checks refuse no more than they should, at their boundaries included.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from securefl.errors import IntegrityError, WireError
from securefl.he._messages import (
    UploadHeader,
    chunk_limits,
    encode_aggregate,
    encode_update,
    parse_aggregate,
    parse_update,
)
from securefl.wire import pack

PRESET = "bfv-n4096"
KEY_ID = bytes(range(32))
DIM = 10
MAX_WEIGHT = 5.0
CHUNKS = 2
DIGEST = bytes(32)


def _update(**change: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "v": 3,
        "preset": PRESET,
        "key_id": KEY_ID,
        "weight": 2.5,
        "dimension": DIM,
        "round_digest": DIGEST,
        "chunks": [b"c0", b"c1"],
        "signature": b"s" * 64,
    }
    obj.update(change)
    return obj


def _parse_update(obj: object) -> tuple[float, bytes, list[bytes], bytes]:
    return parse_update(
        pack(obj), preset=PRESET, key_id=KEY_ID, dimension=DIM, max_weight=MAX_WEIGHT, chunks=CHUNKS
    )


def test_the_valid_update_and_its_encoder_agree() -> None:
    blob = encode_update(
        preset=PRESET,
        key_id=KEY_ID,
        weight=2.5,
        dimension=DIM,
        round_digest=DIGEST,
        chunks=[b"c0", b"c1"],
        signature=b"s" * 64,
    )
    assert blob == pack(_update())
    assert _parse_update(_update()) == (2.5, DIGEST, [b"c0", b"c1"], b"s" * 64)


@pytest.mark.parametrize("weight", [MAX_WEIGHT, 1e-300])
def test_a_weight_at_the_bounds_is_accepted(weight: float) -> None:
    assert _parse_update(_update(weight=weight))[0] == weight


def test_an_empty_round_digest_is_accepted() -> None:
    assert _parse_update(_update(round_digest=b""))[1] == b""


UPDATE_MUST_FAIL: dict[str, tuple[object, type[Exception]]] = {
    "not-a-map": ([1, 2], WireError),
    "extra-field": (_update(extra=1), WireError),
    "missing-field": ({k: v for k, v in _update().items() if k != "signature"}, WireError),
    "version": (_update(v=2), WireError),
    "preset-only": (_update(preset="ckks-n4096"), WireError),
    "dimension-only": (_update(dimension=DIM + 1), WireError),
    "key-id": (_update(key_id=bytes(32)), IntegrityError),
    "weight-int": (_update(weight=2), WireError),
    "weight-zero": (_update(weight=0.0), WireError),
    "weight-negative": (_update(weight=-1.0), WireError),
    "weight-inf": (_update(weight=math.inf), WireError),
    "weight-nan": (_update(weight=math.nan), WireError),
    "weight-above-max": (_update(weight=math.nextafter(MAX_WEIGHT, math.inf)), WireError),
    "chunks-not-list": (_update(chunks=b"c0c1"), WireError),
    "one-chunk-not-bytes": (_update(chunks=[b"c0", "c1"]), WireError),
    "signature-not-bytes": (_update(signature="s" * 64), WireError),
    "round-digest-str": (_update(round_digest="0" * 32), WireError),
    "round-digest-short": (_update(round_digest=bytes(31)), WireError),
    "round-digest-long": (_update(round_digest=bytes(33)), WireError),
}


@pytest.mark.parametrize("case", sorted(UPDATE_MUST_FAIL))
def test_an_update_with_one_field_wrong_is_refused(case: str) -> None:
    obj, error = UPDATE_MUST_FAIL[case]
    with pytest.raises(error):
        _parse_update(obj)


def test_an_update_with_many_more_chunks_than_the_round_has_is_refused_by_size() -> None:
    # Far more (tiny) chunks than the round's: refused by the limits sized to the round.
    with pytest.raises(WireError):
        _parse_update(_update(chunks=[b""] * (64 + CHUNKS)))


def test_update_limits_grow_with_the_chunks_and_aggregate_limits_with_the_uploads() -> None:
    small, big = chunk_limits(4), chunk_limits(400)
    assert big.max_items - small.max_items == 396
    assert big.max_array_len == 400
    with_uploads = chunk_limits(4, uploads=10)
    assert with_uploads.max_items - small.max_items == 60
    assert with_uploads.max_array_len == 10
    assert with_uploads.max_depth == small.max_depth + 1


# --- the aggregate -----------------------------------------------------------------------


def _header(site: object = "a", **change: Any) -> list[Any]:
    fields = {
        "site": site,
        "weight": 1.5,
        "round_digest": DIGEST,
        "digest": bytes([1]) * 32,
        "signature": b"s" * 64,
    }
    fields.update(change)
    return list(fields.values())


def _aggregate(**change: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "v": 3,
        "preset": PRESET,
        "key_id": KEY_ID,
        "round": 4,
        "weight_scale": MAX_WEIGHT,
        "dimension": DIM,
        "uploads": [_header("a"), _header("b"), _header("c")],
        "chunks": [b"c0", b"c1"],
    }
    obj.update(change)
    return obj


def _parse_aggregate(obj: object, max_uploads: int = 3) -> dict[str, Any]:
    return parse_aggregate(pack(obj), chunks=CHUNKS, max_uploads=max_uploads)


def test_the_valid_aggregate_and_its_encoder_agree() -> None:
    headers = [UploadHeader.from_wire(_header(s)) for s in "abc"]
    blob = encode_aggregate(
        preset=PRESET,
        key_id=KEY_ID,
        round_id=4,
        weight_scale=MAX_WEIGHT,
        dimension=DIM,
        uploads=headers,
        chunks=[b"c0", b"c1"],
    )
    assert blob == pack(_aggregate())
    got = _parse_aggregate(_aggregate())
    assert got["uploads"] == headers
    assert got["round"] == 4 and got["chunks"] == [b"c0", b"c1"]


def test_an_aggregate_of_round_zero_with_an_empty_round_digest_is_accepted() -> None:
    got = _parse_aggregate(_aggregate(round=0, uploads=[_header("a", round_digest=b"")]))
    assert got["round"] == 0 and got["uploads"][0].round_digest == b""


AGGREGATE_MUST_FAIL: dict[str, object] = {
    "not-a-map": [1, 2],
    "extra-field": _aggregate(extra=1),
    "version": _aggregate(v=2),
    "round-bool": _aggregate(round=True),
    "round-negative": _aggregate(round=-1),
    "round-float": _aggregate(round=4.0),
    "scale-int": _aggregate(weight_scale=5),
    "scale-zero": _aggregate(weight_scale=0.0),
    "scale-inf": _aggregate(weight_scale=math.inf),
    "uploads-not-list": _aggregate(uploads={"a": 1}),
    "too-many-uploads": _aggregate(uploads=[_header(s) for s in "abcd"]),
    "chunks-not-list": _aggregate(chunks=b"c0"),
    "one-chunk-not-bytes": _aggregate(chunks=[b"c0", 1]),
    "header-not-list": _aggregate(uploads=[b"a"]),
    "header-short": _aggregate(uploads=[_header()[:4]]),
    "header-site": _aggregate(uploads=[_header(site=b"a")]),
    "header-weight-int": _aggregate(uploads=[_header(weight=1)]),
    "header-weight-zero": _aggregate(uploads=[_header(weight=0.0)]),
    "header-round-digest-str": _aggregate(uploads=[_header(round_digest="x")]),
    "header-round-digest-short": _aggregate(uploads=[_header(round_digest=bytes(31))]),
    "header-digest-str": _aggregate(uploads=[_header(digest="0" * 32)]),
    "header-digest-short": _aggregate(uploads=[_header(digest=bytes(31))]),
    "header-digest-empty": _aggregate(uploads=[_header(digest=b"")]),
    "header-signature": _aggregate(uploads=[_header(signature="s")]),
}


@pytest.mark.parametrize("case", sorted(AGGREGATE_MUST_FAIL))
def test_an_aggregate_with_one_field_wrong_is_refused(case: str) -> None:
    with pytest.raises(WireError):
        _parse_aggregate(AGGREGATE_MUST_FAIL[case])


def test_the_upload_bound_is_the_callers() -> None:
    four = _aggregate(uploads=[_header(s) for s in "abcd"])
    assert len(_parse_aggregate(four, max_uploads=4)["uploads"]) == 4
    with pytest.raises(WireError):
        _parse_aggregate(four, max_uploads=3)
