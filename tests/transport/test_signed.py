"""Signed envelope frames: known answer, must-fail vectors and properties."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.errors import IntegrityError, WireError
from securefl.hazmat.sign import SigningKey
from securefl.transport.signed import (
    envelope_message,
    open_sealed,
    read_frame,
    retry_digest,
    seal,
)
from securefl.wire import MAX_ROUND, Envelope

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "transport_envelope.json").read_text(encoding="utf-8")
)
ERRORS = {"WireError": WireError, "IntegrityError": IntegrityError}
KEY = SigningKey.generate()


def _vector_envelope() -> Envelope:
    fields = dict(VECTORS["envelope"])
    return Envelope(**{**fields, "payload": bytes.fromhex(fields["payload"])})


def test_known_answer_seal():
    key = SigningKey.from_private_bytes(bytes.fromhex(VECTORS["seed"]))
    env = _vector_envelope()
    eid = bytes.fromhex(VECTORS["envelope_id"])
    assert key.public_bytes().hex() == VECTORS["public_key"]
    assert envelope_message(env, eid).hex() == VECTORS["signed_message"]
    assert seal(env, key, envelope_id=eid).hex() == VECTORS["sealed"]


def test_known_answer_opens():
    opened = open_sealed(
        bytes.fromhex(VECTORS["sealed"]), keys={"site-a": bytes.fromhex(VECTORS["public_key"])}
    )
    assert opened.envelope == _vector_envelope()
    assert opened.id.hex() == VECTORS["envelope_id"]


@pytest.mark.parametrize("case", VECTORS["must_fail"], ids=lambda c: c["name"])
def test_must_fail_vectors(case):
    keys = {k: bytes.fromhex(v) for k, v in case.get("keys", {}).items()} or {
        "site-a": bytes.fromhex(VECTORS["public_key"])
    }
    with pytest.raises(ERRORS[case["error"]]):
        open_sealed(bytes.fromhex(case["frame"]), keys=keys)


_names = st.text(min_size=1, max_size=20)
_envelopes = st.builds(
    Envelope,
    federation=_names,
    round=st.integers(0, MAX_ROUND),
    stage=_names,
    sender=_names,
    receiver=_names,
    payload=st.binary(max_size=300),
)


@settings(max_examples=60, deadline=None)
@given(_envelopes)
def test_seal_open_round_trips(env):
    sealed = open_sealed(seal(env, KEY), keys={env.sender: KEY.public_bytes()})
    assert sealed.envelope == env


@settings(max_examples=150, deadline=None)
@given(_envelopes, st.data())
def test_any_bit_flip_is_refused(env, data):
    frame = bytearray(seal(env, KEY))
    bit = data.draw(st.integers(0, 8 * len(frame) - 1))
    frame[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises((WireError, IntegrityError)):
        open_sealed(bytes(frame), keys={env.sender: KEY.public_bytes()})


def test_fresh_ids_differ_and_digest_is_of_the_whole_frame():
    env = _vector_envelope()
    a, b = seal(env, KEY), seal(env, KEY)
    assert read_frame(a).id != read_frame(b).id
    assert read_frame(a).digest != read_frame(b).digest


def _digest(frame: bytes, payload_at: int, payload_end: int) -> bytes:
    payload_hash = hashlib.sha256(frame[payload_at:payload_end]).digest()
    return retry_digest(frame, payload_at, payload_end, payload_hash)


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(min_size=1, max_size=3000), data=st.data())
def test_retry_digest_tells_apart_frames_that_differ_in_any_byte(payload, data):
    """The server's "same bytes" test: a frame reusing an id with one byte changed
    anywhere (header, payload, signature) is not taken for a retry of the first."""
    env = Envelope(
        federation="f", round=1, stage="s", sender="site-a", receiver="server", payload=payload
    )
    frame = seal(env, KEY, envelope_id=bytes(16))
    at = read_frame(frame).envelope_at + len(env.head())
    end = at + len(payload)
    assert _digest(frame, at, end) == _digest(bytes(frame), at, end)
    i = data.draw(st.integers(0, len(frame) - 1))
    changed = bytearray(frame)
    changed[i] ^= data.draw(st.integers(1, 255))
    assert _digest(bytes(changed), at, end) != _digest(frame, at, end)
    # the same bytes read with the payload placed elsewhere are another frame too
    assert _digest(frame, at - 1, end) != _digest(frame, at, end)


def test_size_limit_is_enforced_before_decoding():
    env = _vector_envelope()
    frame = seal(env, KEY)
    with pytest.raises(WireError, match="exceeds"):
        open_sealed(frame, keys={env.sender: KEY.public_bytes()}, max_bytes=len(frame) - 1)


def test_check_sees_the_header_before_the_payload_is_copied():
    env = _vector_envelope()
    seen = []

    def check(header):
        seen.append(header)
        raise WireError("refused by the caller")

    with pytest.raises(WireError, match="refused by the caller"):
        open_sealed(seal(env, KEY), keys={env.sender: KEY.public_bytes()}, check=check)
    assert seen[0].sender == env.sender and seen[0].payload_size == len(env.payload)
