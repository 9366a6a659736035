"""The must-fail vectors of tests/vectors/reports_must_fail.json against the audit.

Each variant of the valid chain is re-signed and re-linked with the site's
own (public, test) key, so the one check it names is the only thing that can
catch it; the test asserts that exactly that check does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from securefl.reports import Roster, audit
from securefl.reports._canonical import canonical_bytes
from securefl.reports.server_log import (
    _message,
    entry_hash,
    parse_log_entry,
    read_server_log,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "reports_must_fail.json").read_text())


def _audit(tmp_path: Path, lines: list[str]) -> dict[str, set[str]]:
    (tmp_path / "records").mkdir(exist_ok=True)
    (tmp_path / "records" / "site-a.jsonl").write_text("".join(x + "\n" for x in lines))
    roster = Roster(VECTORS["federation"], {"site-a": bytes.fromhex(VECTORS["public_key"])})
    out: dict[str, set[str]] = {}
    for f in audit([tmp_path], roster=roster).findings:
        out.setdefault(f.severity, set()).add(f.code)
    return out


def test_the_valid_chain_passes(tmp_path: Path) -> None:
    assert "fail" not in _audit(tmp_path, VECTORS["valid"])


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_each_must_fail_vector_is_caught_by_its_check(tmp_path: Path, case: dict[str, Any]) -> None:
    found = _audit(tmp_path, case["lines"])
    assert found.get(case["severity"], set()) >= {case["code"]}
    if case["severity"] == "fail":
        assert found["fail"] == {case["code"]}
    else:
        assert "fail" not in found


def test_server_log_line_matches_its_known_answer(tmp_path: Path) -> None:
    vec = VECTORS["server_log"]
    entry = parse_log_entry(vec["entry"])
    assert canonical_bytes(entry).decode() == vec["canonical"]
    assert _message(entry).hex() == vec["signed_message"]
    assert entry_hash(entry) == vec["entry_hash"]
    path = tmp_path / "server_log.jsonl"
    key = bytes.fromhex(vec["public_key"])
    path.write_text(vec["canonical"] + "\n")
    log, findings = read_server_log(path, federation="vector-fed", public_key=key)
    assert findings == [] and log is not None and log.rounds == {1: entry} and not log.closed
    path.write_text(vec["canonical"] + "\n" + vec["closing"] + "\n")
    log, findings = read_server_log(path, federation="vector-fed", public_key=key)
    assert findings == [] and log is not None and log.closed and log.rounds == {1: entry}
    for case in vec["must_fail"]:
        path.write_text(case["line"] + "\n")
        log, findings = read_server_log(path, federation="vector-fed", public_key=key)
        assert log is None and {f.code for f in findings} == {case["code"]}
