"""``securefl server`` killed with SIGKILL mid-round in ``mask`` and started again on its kit.

Real processes on loopback. The server is killed while round 2 is open (its
journal holds round 2's id); the restarted server resumes from its state
folder: round 2 is journalled and logged as abandoned ("server restarted"),
round 3 opens under a fresh id with fresh masking keys, the signed round
log continues its chain under the same run id, and the audit of the sites'
records against it passes.

The sites' clients are never restarted: each one finds the server gone,
retries with backoff, says hello to the restarted server and takes part in
round 3 (its ledger keeps round 2's charge, its mask round log and record
chain carry on), and every client exits 0 when the federation finishes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import FED_TOML, SITES, child_env, securefl, wait_for_file, write_site_csv

from securefl.cli import cli
from securefl.provision import provision
from securefl.reports.roster import Roster
from securefl.reports.server_log import read_server_log
from securefl.runtime.journal import Journal

TIMEOUT = 120


def _kill(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _log(files: list[Any], path: Path) -> Any:
    files.append(path.open("wb"))
    return files[-1]


def _opened(journal: Path, round_id: int, server: subprocess.Popen[bytes]) -> None:
    """Wait until the server's journal says round ``round_id`` is opening."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server exited ({server.returncode}) before round {round_id}")
        if journal.exists():
            lines = [json.loads(x) for x in journal.read_bytes().splitlines() if x.endswith(b"}")]
            if any(e["body"] == {**e["body"], "kind": "opening", "round": round_id} for e in lines):
                return
        time.sleep(0.05)
    raise AssertionError(f"round {round_id} did not open within {TIMEOUT} s")


def _start_server(
    kits: Path, tmp_path: Path, tag: str, files: list[Any], port: int = 0
) -> tuple[subprocess.Popen[bytes], str]:
    ready = tmp_path / f"server-{tag}.url"
    server = subprocess.Popen(
        securefl("server", "--kit", kits / "server", "--port", str(port), "--ready-file", ready,
                 "--grace", "5"),
        stdout=_log(files, tmp_path / f"server-{tag}.log"), stderr=subprocess.STDOUT,
        env=child_env(), cwd=tmp_path,
    )  # fmt: skip
    return server, wait_for_file(ready, server)


def _start_clients(
    kits: Path, tmp_path: Path, url: str, files: list[Any]
) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            securefl(
                "client",
                "--kit",
                kits / name,
                "--server",
                url,
                "--data",
                tmp_path / f"{name}.csv",
                "--label",
                "outcome",
            ),
            stdout=_log(files, tmp_path / f"{name}.log"),
            stderr=subprocess.STDOUT,
            env=child_env(),
            cwd=tmp_path,
        )
        for name in SITES
    ]


@pytest.mark.slow
def test_a_server_killed_mid_round_resumes_on_its_state_folder(tmp_path: Path) -> None:
    (tmp_path / "fed.toml").write_text(
        FED_TOML.replace("max_rounds = 2", "max_rounds = 3"), encoding="utf-8"
    )
    provision(tmp_path / "fed.toml", tmp_path / "kits")
    kits = tmp_path / "kits"
    for i, name in enumerate(SITES):
        write_site_csv(tmp_path / f"{name}.csv", seed=i)
    state = kits / "server" / "state"
    files: list[Any] = []
    server, url = _start_server(kits, tmp_path, "first", files)
    clients = _start_clients(kits, tmp_path, url, files)
    try:
        _opened(state / "journal.jsonl", 2, server)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        assert server.returncode == -signal.SIGKILL
        # the same address: the sites' clients keep running and must find it again
        server, _ = _start_server(kits, tmp_path, "second", files, port=int(url.rsplit(":", 1)[1]))
        server_code = server.wait(timeout=TIMEOUT)
        client_codes = [client.wait(timeout=TIMEOUT) for client in clients]
    finally:
        _kill(server, *clients)
        for fh in files:
            fh.close()
    log_text = (tmp_path / "server-second.log").read_text(encoding="utf-8")
    assert server_code == 0, log_text
    sites_text = {n: (tmp_path / f"{n}.log").read_text(encoding="utf-8") for n in SITES}
    assert client_codes == [0] * len(SITES), sites_text

    entries = Journal(state / "journal.jsonl").entries
    opened = [e["round"] for e in entries if e["kind"] == "opening"]
    assert opened == [1, 2, 3]  # no round id twice
    closed = {e["round"]: e["summary"] for e in entries if e["kind"] == "round"}
    assert [closed[r]["status"] for r in (1, 2, 3)] == ["aggregated", "abandoned", "aggregated"]
    assert closed[2]["reason"] == "server restarted"

    roster = Roster.load(state / "roster.json")
    log, findings = read_server_log(
        state / "server_log.jsonl", federation="ward", public_key=roster.server
    )
    assert findings == [] and log is not None and log.closed
    assert sorted(log.rounds) == [1, 2, 3]
    assert len({e["run"] for e in log.rounds.values()}) == 1
    records = [str(kits / n / "state" / "records") for n in SITES]
    result = CliRunner().invoke(
        cli,
        ["audit", *records, "--roster", str(state / "roster.json"),
         "--server-log", str(state / "server_log.jsonl"), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
