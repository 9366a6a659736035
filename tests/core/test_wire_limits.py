"""Bounded decoding: a hostile message costs at most about twice its size in memory.

msgpack builds one Python object per encoded value (an empty list costs about
72 bytes of memory for 1 byte on the wire), so without limits a few MB of tiny
arrays, maps or strings grow the decoding process by hundreds of MB. Each test
here decodes what a hostile party would send, through the same path the
receiver uses (envelope, then the stage's payload decoder), and measures the
peak memory with tracemalloc.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.errors import SecureFLError, WireError
from securefl.runtime import messages as m
from securefl.secagg import _messages as sm
from securefl.wire import (
    ENVELOPE_LIMITS,
    MAX_NAME_LEN,
    MAX_ROUND,
    PAYLOAD_LIMITS,
    Envelope,
    EnvelopeHeader,
    Limits,
    array_from_wire,
    scan,
    unpack,
)

FLOOD_BYTES = 3 * 1024 * 1024
SMALL_CONSTANT = 1024 * 1024


def _flood(kind: str, size: int = FLOOD_BYTES) -> bytes:
    """One array of ``size`` bytes of the cheapest-to-send, costliest-to-build values."""
    if kind == "blocks":  # arrays of 200 empty arrays: every container short, many in all
        n = size // 203
        return b"\xdd" + n.to_bytes(4, "big") + (b"\xdc\x00\xc8" + b"\x90" * 200) * n
    unit = {
        "arrays": b"\x90",  # []
        "maps": b"\x81\xa1k\x80",  # {"k": {}}
        "strings": b"\xa2ab",  # "ab"
        "nils": b"\xc0",  # None
        "nested": b"\x91\x91\x91\xc0",  # [[[None]]]
    }[kind]
    n = size // len(unit)
    return b"\xdd" + n.to_bytes(4, "big") + unit * n


def _wrap(fields: dict[str, object], flood_field: str, flood: bytes) -> bytes:
    """A msgpack map with the given fields, one of which is the raw flood."""
    out = bytearray([0x80 | len(fields)])
    for name, value in fields.items():
        out += msgpack.packb(name)
        out += flood if name == flood_field else msgpack.packb(value, use_bin_type=True)
    return bytes(out)


def _envelope(stage: str, payload: bytes) -> bytes:
    return Envelope(
        federation="fed", round=1, stage=stage, sender="a", receiver="server", payload=payload
    ).to_bytes()


_SECAGG = {
    sm.SHARE: ({"v": 1, "shares": {}}, "shares"),
    sm.UNMASK: ({"v": 1, "b": {}, "s": {}}, "b"),
    sm.SHARE_REQUEST: ({"v": 1, "adverts": {}}, "adverts"),
    sm.MASKED_INPUT_REQUEST: ({"v": 1, "senders": [], "shares": {}}, "senders"),
    sm.CONSISTENCY_REQUEST: ({"v": 1, "survivors": []}, "survivors"),
    sm.UNMASK_REQUEST: ({"v": 1, "survivors": [], "dropped": [], "signatures": {}}, "dropped"),
    sm.MASKED_INPUT: ({"v": 1, "bits": 20, "n": 1, "y": b""}, "y"),
    sm.ADVERTISE: ({"v": 1, "c_pk": b"", "s_pk": b"", "commit": b"", "sig": b""}, "sig"),
    sm.CONSISTENCY: ({"v": 1, "sig": b""}, "sig"),
}
_RUNTIME = {
    "round-start": (
        m.RoundStart,
        {
            "cohort": [],
            "model": b"",
            "spec": {},
            "max_weight": 1.0,
            "min_sites": 2,
            "config": {},
            "run": "0f",
        },
    ),
    "report": (m.Report, {"metrics": {}}),
    "round-end": (m.RoundEnd, {"status": "aggregated", "survivors": [], "reason": ""}),
    "finish": (m.Finish, {"model": b"", "reason": "", "rounds": 1}),
}


def _receivers() -> dict[str, Callable[[str], tuple[bytes, Callable[[bytes], object]]]]:
    """Each decoder: flood kind -> (bytes on the wire, how the receiver decodes them)."""
    out: dict[str, Callable[[str], tuple[bytes, Callable[[bytes], object]]]] = {}

    def envelope_itself(kind: str) -> tuple[bytes, Callable[[bytes], object]]:
        fields = {"v": 1, "federation": "", "round": 1, "stage": "", "sender": "a"}
        fields |= {"receiver": "b", "payload": b""}
        return _wrap(fields, "federation", _flood(kind)), Envelope.from_bytes

    out["envelope"] = envelope_itself
    for stage, (fields, flood_field) in _SECAGG.items():

        def secagg(kind: str, stage: str = stage, fields=fields, field=flood_field):
            def receive(data: bytes) -> object:
                env = Envelope.from_bytes(data)
                return sm.decode(env.stage, env.payload, cohort_size=100)

            return _envelope(stage, _wrap(fields, field, _flood(kind))), receive

        out[stage] = secagg
    for name, (cls, fields) in _RUNTIME.items():
        flood_field = next(k for k, v in fields.items() if isinstance(v, (list, dict, str)))

        def runtime(kind: str, cls=cls, fields=fields, field=flood_field):
            def receive(data: bytes) -> object:
                return m.decode(Envelope.from_bytes(data).payload, cls)

            return _envelope("fed/" + name, _wrap(fields, field, _flood(kind))), receive

        out["fed/" + name] = runtime

    def default_payload(kind: str) -> tuple[bytes, Callable[[bytes], object]]:
        return _envelope("he/update", _flood(kind)), lambda d: unpack(
            Envelope.from_bytes(d).payload
        )

    out["default payload limits"] = default_payload
    return out


RECEIVERS = _receivers()


def _peak(call: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        call()
    except SecureFLError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("kind", ["arrays", "maps", "strings", "nils", "nested", "blocks"])
@pytest.mark.parametrize("decoder", sorted(RECEIVERS))
def test_hostile_message_costs_under_twice_its_size(decoder: str, kind: str) -> None:
    """A few MB of tiny values, sent to each decoder: refused within 2x size + 1 MiB."""
    data, receive = RECEIVERS[decoder](kind)
    assert len(data) > FLOOD_BYTES
    peak = _peak(lambda: receive(data))
    assert peak < 2 * len(data) + SMALL_CONSTANT, f"{decoder}/{kind}: {peak / len(data):.1f}x"


def test_a_message_within_the_limits_costs_at_most_the_stated_bound() -> None:
    """The worst message the default limits accept: 2x size + 256 B per allowed value."""
    n = (PAYLOAD_LIMITS.max_items - 1) // 3
    data = msgpack.packb([{"k": {}}] * n)
    assert unpack(data) == [{"k": {}}] * n
    peak = _peak(lambda: unpack(data))
    assert peak < 2 * len(data) + 256 * PAYLOAD_LIMITS.max_items


def test_scan_refuses_each_limit() -> None:
    tight = Limits(max_items=5, max_depth=2, max_array_len=3, max_map_len=1, max_str_len=2)
    tight = tight.tightened(max_bin_len=2)
    assert scan(msgpack.packb([[1, 2], "ab"]), tight) == [1, 4]
    for too_much in ([1, 2, 3, 4], [[[1]]], {"a": 1, "b": 2}, "abc", b"abc", [1, [2, [3]]]):
        with pytest.raises(WireError):
            scan(msgpack.packb(too_much, use_bin_type=True), tight)
    for broken in (b"", b"\x92\x01", b"\xc1", b"\xd4\x01\x00", b"\x01\x02", b"\xa3ab"):
        with pytest.raises(WireError):
            scan(broken, PAYLOAD_LIMITS)


_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=100, deadline=None)
@given(_VALUES)
def test_unpack_round_trips_what_fits(value: object) -> None:
    assert unpack(msgpack.packb(value, use_bin_type=True)) == value


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_unpack_agrees_with_msgpack_or_refuses(data: bytes) -> None:
    """Differential: whatever the scan lets through decodes exactly as msgpack decodes it."""
    try:
        ours = unpack(data)
    except WireError:
        return
    theirs = msgpack.unpackb(data, raw=False, strict_map_key=True)
    assert msgpack.packb(ours, use_bin_type=True) == msgpack.packb(theirs, use_bin_type=True)


def test_envelope_header_is_checked_before_the_payload_is_copied() -> None:
    payload = b"x" * (40 * 1024 * 1024)
    data = _envelope("mask/share", payload)
    seen: list[EnvelopeHeader] = []

    def refuse(header: EnvelopeHeader) -> None:
        seen.append(header)
        raise WireError("not for this federation")

    peak = _peak(lambda: Envelope.from_bytes(data, check=refuse))
    assert seen == [
        EnvelopeHeader(
            federation="fed", round=1, stage="mask/share", sender="a", receiver="server",
            payload_size=len(payload),
        )
    ]  # fmt: skip
    assert peak < SMALL_CONSTANT  # the 40 MB payload was never copied
    env = Envelope.from_bytes(data, check=seen.append)
    assert env.payload == payload and seen[-1] == env.header


@pytest.mark.parametrize(
    "fields",
    [
        # reordered, duplicated, or with the payload before the header
        ["federation", "v", "round", "stage", "sender", "receiver", "payload"],
        ["v", "v", "round", "stage", "sender", "receiver", "payload"],
        ["payload", "v", "federation", "round", "stage", "sender", "receiver"],
    ],
)
def test_envelope_fields_must_be_exactly_the_seven_in_order(fields: list[str]) -> None:
    values = {"v": 1, "federation": "f", "round": 1, "stage": "s", "sender": "a"}
    values |= {"receiver": "b", "payload": b""}
    out = bytearray([0x87])
    for name in fields:
        out += msgpack.packb(name) + msgpack.packb(values[name], use_bin_type=True)
    with pytest.raises(WireError):
        Envelope.from_bytes(bytes(out))


def test_envelope_limits_admit_a_flat_map_only() -> None:
    assert ENVELOPE_LIMITS.max_depth == 1 and ENVELOPE_LIMITS.max_array_len == 0
    with pytest.raises(WireError):
        Envelope.from_bytes(msgpack.packb({"v": 1, "federation": ["nested"]}))


@pytest.mark.parametrize("dtype", [["<f4"], {"<f4": 1}, 4, None])
def test_array_from_wire_refuses_an_unhashable_dtype(dtype: object) -> None:
    """Regression (found by fuzzing plain/update): a list as dtype raised TypeError."""
    with pytest.raises(WireError):
        array_from_wire({"dtype": dtype, "n": 1, "data": b"\x00" * 4})


def test_array_from_wire_refuses_a_boolean_length() -> None:
    with pytest.raises(WireError):
        array_from_wire({"dtype": "<f4", "n": True, "data": b"\x00" * 4})


def test_limits_refuse_negative_or_non_integer_values() -> None:
    with pytest.raises(ValueError, match="max_items"):
        Limits(max_items=-1)
    with pytest.raises(ValueError, match="max_depth"):
        Limits(max_depth=True)


@pytest.mark.parametrize(
    ("stage", "field"),
    [
        (sm.CONSISTENCY_REQUEST, "survivors"),
        (sm.MASKED_INPUT_REQUEST, "senders"),
        (sm.UNMASK_REQUEST, "dropped"),
    ],
)
def test_mask_payload_beyond_the_cohort_is_refused_before_it_is_built(
    stage: str, field: str
) -> None:
    """Stage limits follow the cohort: 8,000 ids for a cohort of 5 cost nothing to refuse."""
    fields, _ = _SECAGG[stage]
    payload = msgpack.packb({**fields, field: [f"s{i}" for i in range(8000)]})
    peak = _peak(lambda: sm.decode(stage, payload, cohort_size=5))
    assert peak < 64 * 1024
    assert sm.decode_limits(stage, 5).max_items < 200


def test_runtime_report_beyond_its_metric_count_is_refused_before_it_is_built() -> None:
    payload = msgpack.packb({"metrics": {f"m{i}": 0.5 for i in range(1000)}})
    peak = _peak(lambda: m.decode(payload, m.Report))
    assert peak < 64 * 1024


def test_he_update_with_more_chunks_than_its_dimension_is_refused_before_it_is_built() -> None:
    """he/update: limits follow the chunk count the round's dimension needs (one here)."""
    from securefl.aggregation.base import RoundContext
    from securefl.hazmat.sign import SigningKey
    from securefl.he import BFV_N4096, HEServerMode, SecretContext

    secret = SecretContext.generate(BFV_N4096, clip=0.1)
    keys = {s: SigningKey.generate() for s in "abc"}
    roster = {s: k.public_bytes() for s, k in keys.items()}
    public = secret.signed_public_context(federation="fed", maker="a", signing_key=keys["a"])
    cohort = ("a", "b", "c")
    ctx = RoundContext(federation="fed", round=1, cohort=cohort, dimension=8, max_weight=1.0)
    server = HEServerMode(public, roster=roster, federation="fed").server(ctx)
    payload = msgpack.packb(
        {"v": 1, "preset": secret.preset.name, "key_id": secret.key_id, "weight": 1.0,
         "dimension": 8, "chunks": [b"c"] * 12_000},
        use_bin_type=True,
    )  # fmt: skip
    envelope = Envelope(
        federation="fed", round=1, stage="he/update", sender="a", receiver="server", payload=payload
    )
    peak = _peak(lambda: server.handle(envelope))
    assert peak < 64 * 1024
    assert isinstance(server.rejected["a"], WireError)


@pytest.mark.parametrize(
    "value",
    [b"x" * 10_000_000, "x" * (MAX_NAME_LEN + 1), 1.0, True],
    ids=["huge-bin", "long-name", "float-version", "bool-version"],
)
def test_envelope_header_fields_are_short_and_exactly_typed(value: object) -> None:
    """A header field holding a 10 MB byte string is refused without being copied."""
    values = {"v": 1, "federation": "f", "round": 1, "stage": "s", "sender": "a"}
    values |= {"receiver": "b", "payload": b""}
    field = "v" if isinstance(value, (float, bool)) else "federation"
    data = msgpack.packb({**values, field: value}, use_bin_type=True)
    peak = _peak(lambda: Envelope.from_bytes(data))
    assert peak < SMALL_CONSTANT
    with pytest.raises(WireError):
        Envelope.from_bytes(data)


# Each first byte at the edge of a msgpack type range, and its neighbour.
_EDGES = [
    0,
    127,
    128,
    -1,
    -32,
    -33,
    {f"k{i}": i for i in range(15)},
    {f"k{i}": i for i in range(16)},
    list(range(15)),
    list(range(16)),
    "x" * 31,
    "x" * 32,
    None,
    True,
    False,
    1.5,
]


@pytest.mark.parametrize("value", _EDGES, ids=repr)
def test_scan_reads_every_type_byte_at_the_edges_of_its_range(value: object) -> None:
    data = msgpack.packb({"v": value, "after": [1, "two"]}, use_bin_type=True)
    assert unpack(data) == {"v": value, "after": [1, "two"]}
    assert len(scan(data, PAYLOAD_LIMITS)) == 4  # two keys, two values


@pytest.mark.parametrize("rnd", [0, MAX_ROUND])
def test_envelope_rounds_from_zero_to_the_largest_are_accepted(rnd: int) -> None:
    env = Envelope(federation="f", round=rnd, stage="s", sender="a", receiver="b", payload=b"")
    assert Envelope.from_bytes(env.to_bytes()).round == rnd
