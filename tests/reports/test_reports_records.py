"""Record writing, canonical form, roster files and the schema."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from reports_fixtures import make_event, raw_public

from securefl.errors import DataError, IntegrityError, ProtocolError
from securefl.reports import RecordWriter, Roster, parse_record
from securefl.reports._canonical import (
    canonical_bytes,
    record_hash,
    signing_payload,
    verify_signature,
)

VECTORS = Path(__file__).parents[1] / "vectors"
SCHEMA = Path(__file__).parents[2] / "docs" / "schema" / "privacy-record-v1.json"


def _append(writer: RecordWriter, round_id: int) -> dict[str, object]:
    return writer.append(
        round_id=round_id,
        event=make_event(640, 64, 1.1),
        accountant="rdp",
        delta=1e-5,
        epsilon=0.5 + round_id,
        epsilon_budget=9.0,
        model_hash=hashlib.sha256(str(round_id).encode()).hexdigest(),
        dataset_size=640,
        expected_batch_size=64,
    )


def test_canonical_form_matches_the_known_answer_vector() -> None:
    vec = json.loads((VECTORS / "reports_record.json").read_text())
    record = parse_record(vec["record"])
    assert canonical_bytes(record).decode() == vec["canonical"]
    assert signing_payload(record).decode() == vec["signing_payload"]
    assert record_hash(record) == vec["record_hash"]
    assert verify_signature(record, bytes.fromhex(vec["public_key"]))
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vec["private_key_seed"]))
    assert raw_public(key).hex() == vec["public_key"]


def test_integer_written_for_a_float_field_still_verifies() -> None:
    vec = json.loads((VECTORS / "reports_record.json").read_text())
    raw = dict(vec["record"], epsilon_budget=3)  # 3.0 was signed
    assert verify_signature(parse_record(raw), bytes.fromhex(vec["public_key"]))


def test_written_records_validate_against_the_json_schema(tmp_path: Path) -> None:
    writer = RecordWriter(
        tmp_path / "a.jsonl", federation="f", site="a", signing_key=Ed25519PrivateKey.generate()
    )
    _append(writer, 0)
    _append(writer, 1)
    schema = json.loads(SCHEMA.read_text())
    for line in (tmp_path / "a.jsonl").read_text().splitlines():
        jsonschema.validate(json.loads(line), schema)
    bad = dict(json.loads(line), prev_hash="xyz")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_restarted_writer_continues_the_same_chain(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "a.jsonl"
    first = _append(RecordWriter(path, federation="f", site="a", signing_key=key), 0)
    second = _append(RecordWriter(path, federation="f", site="a", signing_key=key), 1)
    assert first["prev_hash"] == "0" * 64
    assert second["prev_hash"] == record_hash(first)
    assert len(path.read_text().splitlines()) == 2


def test_writer_refuses_a_round_that_is_not_after_the_last(tmp_path: Path) -> None:
    writer = RecordWriter(
        tmp_path / "a.jsonl", federation="f", site="a", signing_key=Ed25519PrivateKey.generate()
    )
    _append(writer, 3)
    with pytest.raises(ProtocolError):
        _append(writer, 3)


def test_writer_cuts_a_torn_last_line(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "a.jsonl"
    first = _append(RecordWriter(path, federation="f", site="a", signing_key=key), 0)
    with path.open("a") as fh:
        fh.write('{"version": 1, "federa')  # crash mid-write, never fsynced
    second = _append(RecordWriter(path, federation="f", site="a", signing_key=key), 1)
    assert second["prev_hash"] == record_hash(first)
    assert len(path.read_text().splitlines()) == 2


def test_writer_refuses_to_continue_a_tampered_file(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "a.jsonl"
    _append(RecordWriter(path, federation="f", site="a", signing_key=key), 0)
    path.write_text(path.read_text().replace('"epsilon":0.5', '"epsilon":0.25'))
    with pytest.raises(IntegrityError):
        RecordWriter(path, federation="f", site="a", signing_key=key)
    with pytest.raises(IntegrityError):  # another site's key does not continue it either
        RecordWriter(path, federation="f", site="a", signing_key=Ed25519PrivateKey.generate())


def test_parse_record_names_the_bad_field() -> None:
    vec = json.loads((VECTORS / "reports_record.json").read_text())
    with pytest.raises(DataError, match="delta"):
        parse_record(dict(vec["record"], delta=1.5))
    with pytest.raises(DataError, match="extra"):
        parse_record(dict(vec["record"], extra=1))
    with pytest.raises(DataError, match="event"):
        parse_record(dict(vec["record"], event=dict(vec["record"]["event"], steps=0)))


def test_roster_round_trips_and_rejects_garbage(tmp_path: Path) -> None:
    keys = {
        "a": raw_public(Ed25519PrivateKey.generate()),
        "b": raw_public(Ed25519PrivateKey.generate()),
    }
    Roster("fed", keys).save(tmp_path / "roster.json")
    loaded = Roster.load(tmp_path / "roster.json")
    assert loaded == Roster("fed", keys)
    data = json.loads((tmp_path / "roster.json").read_text())
    assert data["version"] == 1 and data["sites"][0] == {"name": "a", "public_key": keys["a"].hex()}
    (tmp_path / "bad.json").write_text(
        '{"version": 1, "federation": "f", "sites": [{"name": "a"}]}'
    )
    with pytest.raises(DataError):
        Roster.load(tmp_path / "bad.json")


def test_roster_with_a_server_key_is_version_2_and_validated(tmp_path: Path) -> None:
    a, b, server = (raw_public(Ed25519PrivateKey.generate()) for _ in range(3))
    Roster("fed", {"a": a, "b": b}, server).save(tmp_path / "roster.json")
    data = json.loads((tmp_path / "roster.json").read_text())
    assert data["version"] == 2 and data["server"] == {"name": "server", "public_key": server.hex()}
    assert Roster.load(tmp_path / "roster.json") == Roster("fed", {"a": a, "b": b}, server)
    schema = json.loads((SCHEMA.parent / "roster.json").read_text())
    jsonschema.validate(data, schema)
    jsonschema.validate(Roster("fed", {"a": a}).to_dict(), schema)
    # a site that holds the server key could sign the log it is checked against
    with pytest.raises(DataError, match="server"):
        Roster("fed", {"a": a, "b": b}, a)
    with pytest.raises(DataError, match="share"):
        Roster("fed", {"a": a, "b": a})
    with pytest.raises(DataError):
        Roster("fed", {"server": a}, server)
    for bad in (
        dict(data, version=1),  # a version 1 roster has no server entry
        {k: v for k, v in data.items() if k != "server"},  # version 2 needs one
        dict(data, server={"name": "srv", "public_key": server.hex()}),
        dict(data, server={"name": "server", "public_key": server.hex()[:-2]}),
        dict(data, extra=1),
        dict(data, version=True),
    ):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(DataError):
            Roster.load(tmp_path / "bad.json")


@pytest.mark.parametrize("removed", [0, 1])
def test_writer_refuses_to_continue_a_file_with_a_signed_record_cut_out(
    tmp_path: Path, removed: int
) -> None:
    # Every remaining record is intact and validly signed, in increasing rounds:
    # only the hash links show that the history was shortened.
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "a.jsonl"
    writer = RecordWriter(path, federation="f", site="a", signing_key=key)
    for round_id in range(3):
        _append(writer, round_id)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for i, line in enumerate(lines) if i != removed))
    with pytest.raises(IntegrityError):
        RecordWriter(path, federation="f", site="a", signing_key=key)
