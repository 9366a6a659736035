"""`simulate --out DIR` stopped part-way keeps what it completed, and a rerun says what to do.

A user presses Ctrl-C (or a site fails) while round 2 runs. The folder must
hold a summary marked interrupted with the rounds completed, the model of
those rounds, the records, and a round log left open: an audit then says
the run did not end (it fails, or warns with --still-running), never that a
finished run is clean. A second `simulate` into the folder must stop at once,
in one line, before any ledger is touched. What continuing the run needs
(identity keys, the he secret context) is in the folder, owner-only.
"""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from simulate_interrupt import interrupt_when_round_2_opens

from securefl.cli import cli
from securefl.reports import Roster
from securefl.reports.server_log import SERVER_LOG_NAME, read_server_log


def _invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _folder_digest(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("secure", ["plain", "he"])
def test_ctrl_c_keeps_what_completed_and_a_rerun_stops_in_one_line(
    secure: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    interrupt_when_round_2_opens(monkeypatch, KeyboardInterrupt())
    args = ["simulate", "--secure", secure, "--rounds", "3", "--out", str(out)]
    stopped = _invoke(*args)
    assert stopped.exit_code == 130, stopped.output
    assert f"what completed is in {out}" in stopped.output

    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] == "interrupted (Ctrl-C)"
    assert summary["rounds_completed"] == 1
    assert [h["round"] for h in summary["history"]] == [1]
    assert all(s["rounds_trained"] >= 1 and s["epsilon"] > 0 for s in summary["sites"])
    # the model of round 1: the server's in plain; in he the one the sites decrypted
    # when they were told the run stops (the server cannot read it)
    assert (out / "global_model.safetensors").exists()

    roster = Roster.load(out / "roster.json")
    log, findings = read_server_log(
        out / SERVER_LOG_NAME, federation=roster.federation, public_key=roster.server
    )
    assert findings == [] and log is not None
    assert sorted(log.rounds) == [1] and not log.closed  # open: the run did not end
    audit = _invoke("audit", str(out), "--json")
    assert audit.exit_code != 0  # a run that did not end is not a clean finished run
    running = _invoke("audit", str(out), "--still-running", "--json")
    assert running.exit_code == 0, running.output

    # what continuing needs is kept, and only the owner can read it
    keys = out / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "state").stat().st_mode) == 0o700
    names = {p.name for p in keys.iterdir()}
    assert {f"{s['name']}.identity.pem" for s in summary["sites"]} <= names
    assert "server.identity.pem" in names
    assert ("he-secret-context.bin" in names) == (secure == "he")
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in keys.iterdir())

    before = _folder_digest(out)
    monkeypatch.undo()
    again = _invoke(*args)
    assert again.exit_code == 2, again.output
    lines = [line for line in again.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "already holds an interrupted simulation (1 round(s)" in lines[0]
    assert "pick a new --out" in lines[0] and "--resume" in lines[0]
    assert _folder_digest(out) == before  # nothing in the earlier run was touched


def test_a_site_error_mid_run_also_keeps_what_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    interrupt_when_round_2_opens(monkeypatch, RuntimeError("disk on fire"))
    result = CliRunner().invoke(
        cli, ["simulate", "--secure", "plain", "--rounds", "3", "--out", str(out)]
    )
    assert result.exit_code != 0
    summary = json.loads((out / "summary.json").read_text())
    assert "disk on fire" in summary["interrupted"] and summary["rounds_completed"] == 1
    assert (out / "global_model.safetensors").exists()
    assert "pick a new --out" in _invoke("simulate", "--out", str(out)).output


def test_the_keys_in_a_run_folder_are_reused_not_replaced(tmp_path: Path) -> None:
    """What a continued run signs and decrypts with is what the first run made."""
    from securefl.hazmat.sign import SigningKey
    from securefl.simulation.modes import _he_keys
    from securefl.simulation.run_folder import identity_keys

    first = identity_keys(tmp_path / "keys", ["a", "b", "c"])
    again = identity_keys(tmp_path / "keys", ["a", "b", "c"])
    raw = {n: k.private_bytes_raw() for n, k in first.items()}
    assert raw == {n: k.private_bytes_raw() for n, k in again.items()}
    roster = {n: SigningKey.from_private_bytes(r).public_bytes() for n, r in raw.items()}
    made = _he_keys("bfv-n4096", raw, roster, "fed", "a", tmp_path / "keys")
    kept = _he_keys("bfv-n4096", raw, roster, "fed", "a", tmp_path / "keys")
    assert kept[1] == made[1]  # the same signed public context
    assert kept[0]["b"].key_id == made[0]["b"].key_id
