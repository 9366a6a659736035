"""privacy = "distributed" over the real deployment path: provision, server, three clients.

Each party is its own process on 127.0.0.1 with the certificates the
project's own provisioning made. Two rounds of distributed DP-SGD over
mutual-TLS HTTPS: the server unmasks the integer sum and takes the step;
each site's ledger charges the central ε of one subsampled Skellam release
per round, its records carry the Skellam event, and ``securefl audit`` on the
server's signed round log and the sites' records passes with ε = ledger.
Every process has a timeout and is killed if still alive at the end.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SITES, child_env, securefl, wait_for_file, write_site_csv

from securefl.cli import cli
from securefl.dp import PrivacyLedger, SkellamEvent
from securefl.reports import read_record_file
from securefl.reports.roster import Roster
from securefl.reports.server_log import read_server_log

pytestmark = pytest.mark.slow

TIMEOUT = 180
EPSILON = 4.0  # dp.epsilon of conftest.DISTRIBUTED_TOML


def _kill(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_three_site_processes_run_distributed_dp_rounds_and_audit_with_epsilon_the_ledger(
    distributed_kits: Path, tmp_path: Path
) -> None:
    kits = distributed_kits
    readme = (kits / "site-a" / "README.md").read_text(encoding="utf-8")
    assert "expected batch" in readme and "μ / (t − c)" in readme  # the public numbers
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
        assert "round 2: aggregated, 3 site(s) aggregated" in out, out
    state = kits / "server" / "state"
    roster = Roster.load(state / "roster.json")
    log, findings = read_server_log(
        state / "server_log.jsonl", federation="ward", public_key=roster.server
    )
    assert findings == [] and log is not None and log.closed
    assert [log.rounds[r]["status"] for r in (1, 2)] == ["aggregated", "aggregated"]
    assert all(log.rounds[r]["survivors"] == list(SITES) for r in (1, 2))

    spent: dict[str, float] = {}
    for name in SITES:
        records, bad = read_record_file(kits / name / "state" / "records" / f"{name}.jsonl")
        assert bad == [] and [r.record["round_id"] for r in records] == [1, 2]
        last = records[-1].record
        assert all(r.record["event"]["kind"] == "skellam" for r in records)
        with PrivacyLedger(
            kits / name / "state" / "ledger.sqlite", site=name, epsilon_budget=EPSILON,
            delta=last["delta"], accountant=last["accountant"],
        ) as ledger:  # fmt: skip
            history = ledger.history()
            assert [e.status for e in history] == ["committed", "committed"]
            assert all(isinstance(e.event, SkellamEvent) for e in history)
            assert 0 < ledger.spent() <= EPSILON
            assert ledger.spent() == pytest.approx(last["epsilon"], rel=1e-9)  # ε = ledger
            spent[name] = ledger.spent()

    records_dirs = [str(kits / n / "state" / "records") for n in SITES]
    result = CliRunner().invoke(
        cli,
        ["audit", *records_dirs, "--roster", str(state / "roster.json"),
         "--server-log", str(state / "server_log.jsonl"), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"], report["findings"]
    assert [f for f in report["findings"] if f["severity"] == "fail"] == []
    last_rounds = {r["site"]: r for r in report["rounds"] if r["round_id"] == 2}
    for name in SITES:  # the audit's own recomputation of each site's ε is its ledger's
        assert last_rounds[name]["recomputed"] == pytest.approx(spent[name], rel=1e-6)
