"""Each stored line must be exactly what was signed: one value per key, canonical bytes.

A line with a repeated key is read differently by different JSON parsers
(most keep the last value, some the first), so two auditors could disagree on
what a signed record says. A line that is not its canonical encoding is not
what was hashed and signed. Both fail the audit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from reports_fixtures import Federation

from securefl.errors import IntegrityError
from securefl.reports import RecordWriter, audit, read_record_file
from securefl.reports._canonical import verify_signature


def fails(fed: Federation) -> dict[str, list[tuple[str | None, int | None, str | None]]]:
    out: dict[str, list[tuple[str | None, int | None, str | None]]] = {}
    for f in audit([fed.root]).findings:
        if f.fails:
            out.setdefault(f.code, []).append((f.site, f.round_id, f.location))
    return out


def _raw_lines(fed: Federation, site: str) -> list[str]:
    return fed.path(site).read_text().splitlines()


def test_duplicate_key_fails(federation: Federation) -> None:
    # the last record carries its epsilon twice: a first-key reader sees 99, the signed value
    # is the last one
    lines = _raw_lines(federation, "alpha")
    lines[2] = lines[2].replace('"epsilon":', '"epsilon":99.0,"epsilon":', 1)
    federation.path("alpha").write_text("\n".join(lines) + "\n")
    found = fails(federation)
    assert [loc for _, _, loc in found["duplicate_key"]] == [f"{federation.path('alpha')}:3"]
    good, bad = read_record_file(federation.path("alpha"))
    assert [b.code for b in bad] == ["duplicate_key"] and len(good) == 2


def test_whitespace_in_a_line_fails_although_the_signature_verifies(
    federation: Federation,
) -> None:
    recs = federation.lines("beta")
    lines = _raw_lines(federation, "beta")
    lines[1] = json.dumps(recs[1])  # default separators: same record, other bytes
    federation.path("beta").write_text("\n".join(lines) + "\n")
    good, _ = read_record_file(federation.path("beta"))
    assert verify_signature(good[1].record, federation.keys["beta"].public_key().public_bytes_raw())
    assert fails(federation) == {"non_canonical": [("beta", 1, f"{federation.path('beta')}:2")]}


def test_integer_for_a_float_in_a_stored_line_fails(federation: Federation) -> None:
    lines = _raw_lines(federation, "alpha")
    assert '"epsilon_budget":10.0' in lines[0]
    lines[0] = lines[0].replace('"epsilon_budget":10.0', '"epsilon_budget":10', 1)
    federation.path("alpha").write_text("\n".join(lines) + "\n")
    assert set(fails(federation)) == {"non_canonical"}


def test_writer_refuses_to_continue_a_non_canonical_file(tmp_path: Path) -> None:
    from reports_fixtures import make_event

    key = Ed25519PrivateKey.generate()
    path = tmp_path / "a.jsonl"
    writer = RecordWriter(path, federation="f", site="a", signing_key=key)
    record = writer.append(
        round_id=1,
        event=make_event(640, 64, 1.2),
        accountant="rdp",
        delta=1e-5,
        epsilon=0.5,
        epsilon_budget=3.0,
        model_hash="0" * 64,
        dataset_size=640,
        expected_batch_size=64,
    )
    path.write_text(json.dumps(record, indent=None) + "\n")
    with pytest.raises(IntegrityError):
        RecordWriter(path, federation="f", site="a", signing_key=key)
