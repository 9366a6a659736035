"""Record fields at their edges, runs in the written records, and a new file made durable.

An auditor reads what `parse_record` accepts: a model or signature that is
not the hex digest it stands for, or a δ of 0, must not pass, while ε = 0
(a round that cost nothing) must. A record written in a named run carries
the run, so a new run may count its rounds from 1 again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from reports_fixtures import make_event

from securefl.errors import DataError
from securefl.reports import RecordWriter, parse_record
from securefl.reports import records as records_module
from securefl.reports.records import read_record_file, record_run

VECTORS = Path(__file__).parents[1] / "vectors"


def _vector_record() -> dict[str, object]:
    return dict(json.loads((VECTORS / "reports_record.json").read_text())["record"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_hash", "not-a-digest"),
        ("model_hash", "ab" * 31),
        ("model_hash", "zz" * 32),
        ("signature", "not-a-signature"),
        ("signature", "ab" * 63),
        ("signature", "zz" * 64),
    ],
)
def test_hash_and_signature_fields_must_be_hex_digests_of_their_length(
    field: str, value: str
) -> None:
    with pytest.raises(DataError):
        parse_record(dict(_vector_record(), **{field: value}))


def test_delta_zero_is_refused_and_epsilon_zero_is_accepted() -> None:
    with pytest.raises(DataError):
        parse_record(dict(_vector_record(), delta=0.0))
    assert parse_record(dict(_vector_record(), epsilon=0.0))["epsilon"] == 0.0


def test_record_run_is_the_named_run_or_empty_for_records_without_one() -> None:
    rec = _vector_record()
    rec.pop("run", None)
    assert record_run(rec) == ""
    assert record_run(dict(rec, run="0b2f")) == "0b2f"


def _append(writer: RecordWriter, round_id: int, run: str) -> dict[str, object]:
    return writer.append(
        round_id=round_id,
        event=make_event(640, 64, 1.1),
        accountant="rdp",
        delta=1e-5,
        epsilon=0.5,
        epsilon_budget=9.0,
        model_hash=hashlib.sha256(f"{run}{round_id}".encode()).hexdigest(),
        dataset_size=640,
        expected_batch_size=64,
        run=run,
    )


def test_a_named_run_is_written_into_the_record_and_restarts_round_ids(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "a.jsonl"  # parent folders are created
    key = Ed25519PrivateKey.generate()
    writer = RecordWriter(path, federation="f", site="a", signing_key=key)
    _append(writer, 5, "")
    second = _append(writer, 1, "0b2f")
    assert second["run"] == "0b2f"
    good, bad = read_record_file(path)
    assert not bad
    assert [record_run(r.record) for r in good] == ["", "0b2f"]
    # a restarted writer continues both runs' numbering from the file
    again = RecordWriter(path, federation="f", site="a", signing_key=key)
    assert _append(again, 2, "0b2f")["round_id"] == 2


def test_a_duplicate_key_line_is_reported_at_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    writer = RecordWriter(path, federation="f", site="a", signing_key=Ed25519PrivateKey.generate())
    _append(writer, 1, "")
    line = path.read_text().strip()
    path.write_text(line + "\n" + line[:-1] + ',"site":"b"}\n')
    _, bad = read_record_file(path)
    assert [(b.line, b.code) for b in bad] == [(2, "duplicate_key")]


def test_a_new_record_file_has_its_folder_entry_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    monkeypatch.setattr(records_module, "_fsync_dir", synced.append)
    path = tmp_path / "a.jsonl"
    writer = RecordWriter(path, federation="f", site="a", signing_key=Ed25519PrivateKey.generate())
    _append(writer, 1, "")
    assert synced == [tmp_path]  # the new file's name is durable
    _append(writer, 2, "")
    assert synced == [tmp_path]  # appending to it needs no second folder sync
