"""The zero-copy encodings are byte-for-byte the plain msgpack encodings they replace.

``Envelope.head`` + payload, ``seal``'s joined frame and the ``/v1/receive``
body sent in parts must equal what ``pack`` of the same objects gives: the
peers decode them with the strict decoders, and the known-answer vectors
were made with ``pack``.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.errors import WireError
from securefl.hazmat.sign import SigningKey
from securefl.transport.https_client import _messages, _poll_limits
from securefl.transport.https_server import receive_body
from securefl.transport.signed import seal, seal_parts
from securefl.wire import Envelope, pack

KEY = SigningKey.generate()
names = st.text(min_size=1, max_size=20)


@settings(max_examples=50, deadline=None)
@given(
    fed=names,
    rnd=st.integers(0, 2**31),
    stage=names,
    payload=st.sampled_from([0, 1, 31, 255, 256, 65535, 65536, 70000]).map(os.urandom),
)
def test_envelope_and_frame_parts_equal_their_packed_encoding(fed, rnd, stage, payload):
    env = Envelope(
        federation=fed, round=rnd, stage=stage, sender="site-a", receiver="server", payload=payload
    )
    packed = pack(
        {"v": 1, "federation": fed, "round": rnd, "stage": stage, "sender": "site-a",
         "receiver": "server", "payload": payload}
    )  # fmt: skip
    assert env.to_bytes() == packed
    eid = os.urandom(16)
    frame = seal(env, KEY, envelope_id=eid)
    sig = frame[-64:]
    assert frame == pack({"v": 1, "id": eid, "env": packed, "sig": sig})


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 2**40), st.binary(max_size=70000)), max_size=5))
def test_receive_body_parts_equal_the_packed_message_list(messages):
    assert b"".join(receive_body(messages)) == pack(
        {"messages": [[seq, frame] for seq, frame in messages]}
    )


def _read_back(body: bytes) -> list[tuple[int, bytes]]:
    return [(seq, bytes(frame)) for seq, frame in _messages(body, _poll_limits(1 << 20))]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 2**40), st.binary(max_size=70000)), max_size=5))
def test_a_site_reads_back_the_message_list_the_server_sent(messages):
    """The site's in-place reading of a receive body gives what was sent, seal parts too."""
    assert _read_back(b"".join(receive_body(messages))) == messages
    env = Envelope(
        federation="f", round=1, stage="s", sender="server", receiver="a", payload=b"x" * 300
    )
    parts = seal_parts(env, KEY)
    assert _read_back(b"".join(receive_body([(7, parts)]))) == [(7, b"".join(parts))]


@pytest.mark.parametrize(
    "body",
    [
        pack({"messages": [[1, "a str, not a frame"]]}),
        pack({"messages": [[True, b"frame"]]}),
        pack({"messages": [[1.0, b"frame"]]}),
        pack({"messages": [[1, b"frame", 3]]}),
        pack({"messages": [1, b"frame"]}),
        pack({"messages": {"1": b"frame"}}),
        pack({"other": [[1, b"frame"]]}),
        pack({"messages": [[1, b"frame"]], "more": 1}),
        pack([[1, b"frame"]]),
        pack({"messages": [[1, b"frame"]]}) + b"\x00",
        pack({"messages": [[1, b"frame"]]})[:-1],
        pack({"messages": [[1, b"x" * 2048]]}),  # a frame over the site's limit
    ],
)
def test_a_malformed_receive_body_is_refused(body):
    """Whatever a server (or a tamperer past TLS) puts in a receive body, the site's
    reader refuses anything but ``{"messages": [[int, bin], ...]}`` within its limits."""
    with pytest.raises(WireError):
        _messages(body, _poll_limits(1024))
