"""Each party its own process on 127.0.0.1: ``securefl server`` and three ``securefl client``.

Every process gets a timeout and is killed if still alive at the end, so a
failing run cannot hang the suite. The server picks a free port and writes
its URL to a file; the clients are told it with ``--server``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT, SITES, child_env, securefl, wait_for_file, write_site_csv

from securefl.cli import cli
from securefl.reports.roster import Roster
from securefl.reports.server_log import read_server_log

TIMEOUT = 180


def _kill(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_three_site_processes_complete_a_mask_run_from_the_cli_and_audit_clean(
    kits: Path, tmp_path: Path
):
    env = child_env()
    ready = tmp_path / "server.url"
    server_out = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        securefl(
            "server", "--kit", kits / "server", "--port", "0", "--ready-file", ready,
            "--json-logs", "--grace", "5",
        ),
        stdout=server_out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
    )  # fmt: skip
    clients: dict[str, subprocess.Popen[bytes]] = {}
    try:
        url = wait_for_file(ready, server)
        for i, name in enumerate(SITES):
            csv = write_site_csv(tmp_path / f"{name}.csv", seed=i)
            clients[name] = subprocess.Popen(
                securefl(
                    "client", "--kit", kits / name, "--server", url,
                    "--data", csv, "--label", "outcome",
                ),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
            )  # fmt: skip
        outputs = {n: p.communicate(timeout=TIMEOUT)[0].decode() for n, p in clients.items()}
        server_code = server.wait(timeout=TIMEOUT)
    finally:
        _kill(*clients.values(), server)
        server_out.close()
    log_text = (tmp_path / "server.log").read_text(encoding="utf-8")
    assert server_code == 0, log_text
    for name, out in outputs.items():
        assert clients[name].returncode == 0, out
        assert "Traceback" not in out
        assert "round 1: training with 3 site(s)" in out
        assert "round 2: aggregated, 3 site(s) aggregated" in out
        assert f"{name}: the federation finished" in out
    # one JSON object per log line: admissions, stage changes, round results
    assert '"event": "round"' in log_text and '"event": "admission"' in log_text
    # the server's signed round log: both rounds aggregated by all three, then closed
    state = kits / "server" / "state"
    roster = Roster.load(state / "roster.json")
    log, findings = read_server_log(
        state / "server_log.jsonl", federation="ward", public_key=roster.server
    )
    assert findings == [] and log is not None and log.closed
    assert [log.rounds[r]["status"] for r in (1, 2)] == ["aggregated", "aggregated"]
    assert all(log.rounds[r]["survivors"] == list(SITES) for r in (1, 2))
    # the sites' records, held against the server's log: the audit passes
    records = [str(kits / n / "state" / "records") for n in SITES]
    result = CliRunner().invoke(
        cli,
        ["audit", *records, "--roster", str(state / "roster.json"),
         "--server-log", str(state / "server_log.jsonl"), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_the_wrapping_example_runs_over_processes_and_audits_clean(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "wrap_over_processes.py"),
         "--rounds", "2", "--timeout", str(TIMEOUT), "--workdir", str(tmp_path)],
        env=child_env(), capture_output=True, timeout=3 * TIMEOUT, check=False,
    )  # fmt: skip
    out = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, out
    for name in SITES:
        assert f"{name}: the federation finished (reached max_rounds=2)" in out
    assert "PASSED: 0 failing findings" in out


def test_a_client_whose_server_stays_unreachable_exits_with_one_line(kits: Path, tmp_path: Path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = subprocess.run(
        securefl(
            "client", "--kit", kits / "site-a", "--server", f"https://127.0.0.1:{port}",
            "--data", write_site_csv(tmp_path / "a.csv", seed=0), "--label", "outcome",
            "--retries", "2",
        ),
        env=child_env(), capture_output=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 7, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("stopped: the server is unreachable"), err
