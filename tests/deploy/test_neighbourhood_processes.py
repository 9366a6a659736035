"""The neighbourhood mask round over the real deployment path: provision, server, six clients.

Each party is its own process on 127.0.0.1 with the certificates and the
signed roster the project's own provisioning made (the roster carrying each
site's BLS key and proof of possession). Six sites leave the complete graph
(``complete_graph_max = 5``): k = 4, t = 3, each site sent only its holders'
adverts and lists, its consistency signature a BLS signature, and the
cohort's n − m signatures checked by every site as one aggregate against
the roster's keys. The round completes over mutual-TLS HTTPS and ``securefl
audit`` on the server's signed round log and the sites' records passes.
Every process has a timeout and is killed if still alive at the end.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import NEIGHBOURHOOD_SITES, child_env, securefl, wait_for_file, write_site_csv

from securefl.cli import cli
from securefl.reports.roster import Roster
from securefl.reports.server_log import read_server_log

pytestmark = pytest.mark.slow

TIMEOUT = 240


def _kill(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_six_site_processes_complete_a_neighbourhood_round_and_audit_clean(
    neighbourhood_kits: Path, tmp_path: Path
) -> None:
    kits = neighbourhood_kits
    env = child_env()
    ready = tmp_path / "server.url"
    server_out = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        securefl(
            "server", "--kit", kits / "server", "--port", "0", "--ready-file", ready,
            "--grace", "5",
        ),
        stdout=server_out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
    )  # fmt: skip
    clients: dict[str, subprocess.Popen[bytes]] = {}
    try:
        url = wait_for_file(ready, server)
        for i, name in enumerate(NEIGHBOURHOOD_SITES):
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
        assert "round 1: aggregated, 6 site(s) aggregated" in out, out
    state = kits / "server" / "state"
    roster = Roster.load(state / "roster.json")
    log, findings = read_server_log(
        state / "server_log.jsonl", federation="ring", public_key=roster.server
    )
    assert findings == [] and log is not None and log.closed
    assert log.rounds[1]["status"] == "aggregated"
    assert log.rounds[1]["survivors"] == list(NEIGHBOURHOOD_SITES)
    records = [str(kits / n / "state" / "records") for n in NEIGHBOURHOOD_SITES]
    result = CliRunner().invoke(
        cli,
        ["audit", *records, "--roster", str(state / "roster.json"),
         "--server-log", str(state / "server_log.jsonl"), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
