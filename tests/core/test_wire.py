import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.errors import WireError
from securefl.wire import Envelope, array_from_wire, array_to_wire, pack, unpack


def _env(**kw):
    base = dict(
        federation="f",
        round=3,
        stage="plain/update",
        sender="a",
        receiver="server",
        payload=b"\x00\x01",
    )
    base.update(kw)
    return Envelope(**base)


def test_envelope_round_trip():
    env = _env()
    assert Envelope.from_bytes(env.to_bytes()) == env


@pytest.mark.parametrize(
    "obj",
    [
        {
            "v": 2,
            "federation": "f",
            "round": 1,
            "stage": "s",
            "sender": "a",
            "receiver": "b",
            "payload": b"",
        },
        {
            "v": 1,
            "federation": "f",
            "round": -1,
            "stage": "s",
            "sender": "a",
            "receiver": "b",
            "payload": b"",
        },
        {
            "v": 1,
            "federation": "f",
            "round": 1,
            "stage": "s",
            "sender": "a",
            "receiver": "b",
            "payload": "text",
        },
        {"v": 1, "federation": "f", "round": 1, "stage": "s", "sender": "a"},
        [1, 2, 3],
    ],
)
def test_bad_envelopes_are_refused(obj):
    with pytest.raises(WireError):
        Envelope.from_bytes(msgpack.packb(obj, use_bin_type=True))


def test_garbage_and_oversize_are_refused():
    with pytest.raises(WireError):
        unpack(b"\xc1\xff\x00")
    with pytest.raises(WireError, match="exceeds"):
        Envelope.from_bytes(_env(payload=b"x" * 200).to_bytes(), max_bytes=100)


def test_pickle_payloads_are_just_bytes():
    import pickle

    class Boom:
        def __reduce__(self):
            return (print, ("executed",))

    data = pickle.dumps(Boom())
    with pytest.raises(WireError):
        Envelope.from_bytes(data)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(allow_nan=False, width=32), max_size=64))
def test_arrays_round_trip(values):
    arr = np.asarray(values, dtype=np.float32)
    back = array_from_wire(unpack(pack(array_to_wire(arr))))
    np.testing.assert_array_equal(back, arr)


def test_array_length_and_dtype_checked():
    enc = array_to_wire(np.zeros(4, dtype=np.float32))
    with pytest.raises(WireError, match="expected 5"):
        array_from_wire(enc, expected_len=5)
    with pytest.raises(WireError):
        array_from_wire({**enc, "data": enc["data"][:-1]})
    with pytest.raises(WireError):
        array_from_wire({**enc, "dtype": "|O"})


def test_size_limit_itself_refuses_a_message_of_many_small_fields():
    # Every field is far below its own limit; only the total size is one byte over.
    value = [f"f{i}" for i in range(2000)]
    data = msgpack.packb(value, use_bin_type=True)
    assert unpack(data, max_bytes=len(data)) == value
    with pytest.raises(WireError):
        unpack(data, max_bytes=len(data) - 1)
    raw = _env(payload=b"x" * 200).to_bytes()
    assert Envelope.from_bytes(raw, max_bytes=len(raw)).payload == b"x" * 200
    with pytest.raises(WireError):
        Envelope.from_bytes(raw, max_bytes=len(raw) - 1)
