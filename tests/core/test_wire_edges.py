"""Edges of securefl.wire that a complete mutation run found unguarded (docs/mutation.md)."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from securefl.errors import WireError
from securefl.wire import (
    MAX_NAME_LEN,
    Envelope,
    Limits,
    array_from_wire,
    array_to_wire,
    bin_header,
    pack,
    scan,
    unpack,
)


def _raw_envelope(**fields: object) -> bytes:
    base: dict[str, object] = {
        "v": 1,
        "federation": "f",
        "round": 1,
        "stage": "s",
        "sender": "a",
        "receiver": "server",
        "payload": b"x",
    }
    return msgpack.packb({**base, **fields}, use_bin_type=True)


def test_the_raw_envelope_helper_builds_what_envelope_writes() -> None:
    env = Envelope(federation="f", round=1, stage="s", sender="a", receiver="server", payload=b"x")
    assert _raw_envelope() == env.to_bytes()


@pytest.mark.parametrize("rnd", [True, False, 1.0, "1", None])
def test_an_envelope_round_that_is_not_an_int_is_refused(rnd: object) -> None:
    with pytest.raises(WireError):
        Envelope.from_bytes(_raw_envelope(round=rnd))


def test_decoders_take_any_bytes_like_and_hand_back_immutable_bytes() -> None:
    env = Envelope(
        federation="f", round=3, stage="s", sender="a", receiver="b", payload=b"\x01\x02"
    )
    for data in (bytearray(env.to_bytes()), memoryview(env.to_bytes())):
        got = Envelope.from_bytes(data)
        assert got == env and type(got.payload) is bytes
    value = {"k": [1, b"\x00", "x"]}
    for data in (bytearray(pack(value)), memoryview(pack(value))):
        assert unpack(data) == value


@pytest.mark.parametrize(
    "obj",
    [
        ["dtype", "n", "data"],
        {"dtype": "<f8", "n": 1, "data": bytes(8), "extra": 0},
        {"dtype": "<f8", "n": 1, "data": "x" * 8},
        {"dtype": "<f8", "n": 1, "data": bytearray(8)},
    ],
)
def test_array_from_wire_refuses_anything_but_the_three_fields_with_a_bytes_body(
    obj: object,
) -> None:
    with pytest.raises(WireError):
        array_from_wire(obj)


@pytest.mark.parametrize("dtype", [">f4", "<f4", "=f8", ">f8", ">i8", "=u4", "|u1", ">u2"])
def test_array_to_wire_sends_the_same_values_as_little_endian_bytes_of_the_same_type(
    dtype: str,
) -> None:
    values = np.arange(5).astype(dtype)
    wire = array_to_wire(values)
    expected = values.astype(values.dtype.newbyteorder("<"))
    assert wire["dtype"] == expected.dtype.str and wire["dtype"][0] in "<|"
    assert np.dtype(wire["dtype"]).kind == values.dtype.kind
    assert np.dtype(wire["dtype"]).itemsize == values.dtype.itemsize
    assert wire["data"] == expected.tobytes()
    np.testing.assert_array_equal(array_from_wire(wire), values)


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65_535, 65_536, 70_000])
def test_bin_header_is_the_header_msgpack_writes(size: int) -> None:
    packed = msgpack.packb(bytes(size), use_bin_type=True)
    header = bin_header(size)
    assert packed == header + bytes(size)


def test_bin_header_at_the_largest_bin_and_beyond() -> None:
    assert bin_header(2**32 - 1) == b"\xc6\xff\xff\xff\xff"
    assert bin_header(2**16) == b"\xc6\x00\x01\x00\x00"
    for too_big in (2**32, 2**33):
        with pytest.raises(WireError):
            bin_header(too_big)


def test_envelope_names_up_to_255_characters_travel_and_longer_than_the_limit_do_not() -> None:
    name = "n" * 255
    env = Envelope(federation=name, round=1, stage=name, sender=name, receiver=name, payload=b"")
    assert Envelope.from_bytes(env.to_bytes()) == env
    too_long = "n" * (MAX_NAME_LEN + 1)
    with pytest.raises(WireError):
        Envelope.from_bytes(_raw_envelope(sender=too_long))


def test_an_envelope_name_of_exactly_max_name_len_characters_is_accepted() -> None:
    """The longest name the constant promises needs a 3-byte str16 header: it must pass."""
    name = "n" * MAX_NAME_LEN
    env = Envelope(federation=name, round=1, stage="s", sender="a", receiver="b", payload=b"")
    assert Envelope.from_bytes(env.to_bytes()) == env


def test_scan_refuses_a_message_over_max_items_that_is_within_every_other_limit() -> None:
    room = Limits(max_items=6, max_depth=2, max_array_len=3, max_map_len=1, max_str_len=2)
    assert scan(msgpack.packb([[1, 2], [3]]), room) == [1, 4]
    tight = room.tightened(max_items=5)
    with pytest.raises(WireError):  # 6 values: the lists hold at most 2, the depth is 2
        scan(msgpack.packb([[1, 2], [3]]), tight)


def test_envelope_fields_in_another_order_are_refused_even_when_each_value_has_its_type() -> None:
    """Sender and receiver swapped with their values: read by position, the server would
    take the receiver's name for the sender."""
    values = {"v": 1, "federation": "f", "round": 1, "stage": "s", "sender": "a"}
    values |= {"receiver": "server", "payload": b""}
    order = ["v", "federation", "round", "stage", "receiver", "sender", "payload"]
    out = bytearray([0x87])
    for name in order:
        out += msgpack.packb(name) + msgpack.packb(values[name], use_bin_type=True)
    with pytest.raises(WireError):
        Envelope.from_bytes(bytes(out))
