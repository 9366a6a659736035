"""One log line per admission and per refusal (with its reason); JSON lines for machines."""

from __future__ import annotations

import json
import logging

from securefl.transport._status import JsonLogFormatter
from securefl.transport.signed import seal
from securefl.wire import Envelope


def _env(sender: str) -> Envelope:
    return Envelope(
        federation="fed", round=0, stage="fed/hello", sender=sender, receiver="server", payload=b""
    )


def test_admission_and_refusal_are_logged_once_each_with_the_reason(fed, caplog):
    a, b = fed.pki.sites["site-a"], fed.pki.sites["site-b"]
    caplog.set_level(logging.INFO, logger="securefl.server")
    assert fed.raw(a).post("/v1/send", content=seal(_env("site-a"), a.identity)).status_code == 202
    assert fed.raw(b).post("/v1/send", content=seal(_env("site-a"), a.identity)).status_code == 403
    events = [r.event for r in caplog.records if r.name == "securefl.server"]
    assert [e["event"] for e in events] == ["admission", "refusal"]
    assert events[0]["site"] == "site-a"
    assert events[1]["site"] == "site-b" and events[1]["status"] == 403
    assert "TLS name" in events[1]["reason"]


def test_json_formatter_writes_one_object_per_line_with_the_event_fields(fed, caplog):
    b = fed.pki.sites["site-b"]
    caplog.set_level(logging.INFO, logger="securefl.server")
    fed.raw(b).post("/v1/send", content=b"\xc1")
    (record,) = [r for r in caplog.records if r.name == "securefl.server"]
    line = JsonLogFormatter().format(record)
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["event"] == "refusal" and obj["status"] == 400 and obj["level"] == "warning"
    assert obj["site"] == "site-b" and "malformed" in obj["reason"]
