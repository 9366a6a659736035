"""Known-answer and must-fail vectors for what he-mode parties sign; properties of the encodings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from securefl.errors import IntegrityError, WireError
from securefl.hazmat.sign import SigningKey, verify
from securefl.he._messages import UploadHeader
from securefl.he._trust import chunks_digest, open_signed_context, sign_context, update_message
from securefl.wire import pack, unpack

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "he_signatures.json").read_text()
)


def _fields(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: bytes.fromhex(v) if k in ("key_id", "round_digest") else v for k, v in raw.items()}


def test_upload_known_answer() -> None:
    v = VECTORS["upload"]
    chunks = [bytes.fromhex(c) for c in v["chunks"]]
    assert chunks_digest(chunks).hex() == v["digest"]
    message = update_message(**_fields(v["fields"]), digest=bytes.fromhex(v["digest"]))
    assert message.hex() == v["message"]
    key = SigningKey.from_private_bytes(bytes.fromhex(v["seed"]))
    assert key.public_bytes().hex() == v["public_key"]
    assert key.sign(message).hex() == v["signature"]
    fields = _fields(v["fields"])
    header = UploadHeader(
        fields["site"],
        fields["weight"],
        fields["round_digest"],
        chunks_digest(chunks),
        bytes.fromhex(v["signature"]),
    )
    roster = {fields["site"]: bytes.fromhex(v["public_key"])}
    check = {k: fields[k] for k in ("federation", "round_id", "key_id", "preset", "dimension")}
    header.verify(roster=roster, max_weight=fields["max_weight"], **check)


@pytest.mark.parametrize("case", VECTORS["upload"]["must_fail"], ids=lambda c: c["why"])
def test_upload_must_fail(case: dict[str, Any]) -> None:
    v = VECTORS["upload"]
    message = update_message(**_fields(case["fields"]), digest=bytes.fromhex(v["digest"]))
    with pytest.raises(IntegrityError):
        verify(bytes.fromhex(v["public_key"]), message, bytes.fromhex(v["signature"]))


def test_signed_context_known_answer_and_must_fail() -> None:
    v = VECTORS["context"]
    key = SigningKey.from_private_bytes(bytes.fromhex(v["seed"]))
    roster = {v["maker"]: bytes.fromhex(v["public_key"])}
    for entry in v["signed"]:
        kind, signed = entry["kind"], bytes.fromhex(entry["signed"])
        made = sign_context(
            bytes.fromhex(v["context"]),
            kind=kind,
            federation=v["federation"],
            maker=v["maker"],
            signing_key=key,
        )
        assert made == signed
        maker, inner = open_signed_context(
            signed, kind=kind, roster=roster, federation=v["federation"]
        )
        assert (maker, inner.hex()) == (v["maker"], v["context"])
        other = "secret" if kind == "public" else "public"
        with pytest.raises(WireError):  # a public context is not a secret one, nor vice versa
            open_signed_context(signed, kind=other, roster=roster, federation=v["federation"])
        obj = unpack(signed)
        relabelled = pack(dict(obj, kind=other))  # same signature under the other label
        with pytest.raises(IntegrityError):
            open_signed_context(relabelled, kind=other, roster=roster, federation=v["federation"])
        with pytest.raises(IntegrityError):
            open_signed_context(signed, kind=kind, roster=roster, federation="elsewhere")


@given(st.lists(st.binary(max_size=20), max_size=5), st.lists(st.binary(max_size=20), max_size=5))
def test_chunk_digests_differ_for_different_lists(a: list[bytes], b: list[bytes]) -> None:
    """No two chunk lists share a digest, whatever their split (length-prefixed)."""
    assert (chunks_digest(a) == chunks_digest(b)) == (a == b)


@given(
    st.integers(min_value=0, max_value=2**32),
    st.text(min_size=1, max_size=8),
    st.floats(min_value=1e-6, max_value=1e6),
    st.floats(min_value=1e-6, max_value=1e6),
)
def test_upload_messages_bind_every_field(
    round_id: int, site: str, weight: float, max_weight: float
) -> None:
    base = {
        "federation": "f",
        "round_id": round_id,
        "site": site,
        "key_id": b"k" * 16,
        "preset": "bfv-n4096",
        "dimension": 10,
        "weight": weight,
        "max_weight": max_weight,
        "round_digest": b"r" * 32,
        "digest": b"d" * 32,
    }
    message = update_message(**base)
    for key, value in (
        ("round_id", round_id + 1),
        ("site", site + "x"),
        ("weight", weight * 2),
        ("max_weight", max_weight * 2),
        ("digest", b"e" * 32),
        ("round_digest", b"s" * 32),
    ):
        assert update_message(**{**base, key: value}) != message


@given(st.integers(min_value=0, max_value=31), st.integers(min_value=0, max_value=7))
def test_an_aggregate_header_survives_the_wire_and_no_digest_bit_can_change(
    byte: int, bit: int
) -> None:
    """The header an aggregate carries: round-trips unchanged; any flipped chunk-digest bit
    breaks its signature (so a server cannot point a site's header at other ciphertexts)."""
    v = VECTORS["upload"]
    fields = _fields(v["fields"])
    digest = bytes.fromhex(v["digest"])
    header = UploadHeader(
        fields["site"],
        fields["weight"],
        fields["round_digest"],
        digest,
        bytes.fromhex(v["signature"]),
    )
    assert UploadHeader.from_wire(unpack(pack(header.to_wire()))) == header
    roster = {fields["site"]: bytes.fromhex(v["public_key"])}
    check = {k: fields[k] for k in ("federation", "round_id", "key_id", "preset", "dimension")}
    header.verify(roster=roster, max_weight=fields["max_weight"], **check)
    flipped = bytearray(digest)
    flipped[byte] ^= 1 << bit
    forged = UploadHeader(
        header.site, header.weight, header.round_digest, bytes(flipped), header.signature
    )
    with pytest.raises(IntegrityError):
        forged.verify(roster=roster, max_weight=fields["max_weight"], **check)
