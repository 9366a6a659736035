"""The federation as real processes on loopback: a server and one client process per site.

Every run here is :func:`run_https_simulation` (what ``simulate --transport
https`` runs): a provisioned federation, mutual TLS, signed envelopes, each
party its own OS process, and a timeout on the whole run so a test always
stops by itself. Each test asserts what the federation did (the rounds in
the server's signed round log, who survived, the audit of the sites'
records), never log text. A site is killed with SIGKILL at a precise
protocol step by watching the server's admission log for that site's
message.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from securefl.config import DPConfig, FederationConfig, RoundConfig, StrategyConfig, TrainConfig
from securefl.data.federations import breast_cancer_federation
from securefl.reports.audit import audit
from securefl.simulation.https_run import run_https_simulation
from securefl.simulation.processes import Child

pytestmark = pytest.mark.slow

TIMEOUT = 300.0


def _run(
    tmp_path: Path,
    secure: str,
    *,
    sites: int = 3,
    rounds: int = 2,
    stage_timeout: float = 60.0,
    on_status: Any = None,
) -> tuple[Any, Path]:
    out = tmp_path / "out"
    result = run_https_simulation(
        breast_cancer_federation(sites=sites, seed=0),
        FederationConfig(
            secure=secure,
            dp=DPConfig(epsilon=1.0, batch_size=32, max_grad_norm=0.5),
            train=TrainConfig(learning_rate=1.0),
            rounds=RoundConfig(max_rounds=rounds, min_sites=2, stage_timeout_seconds=stage_timeout),
            strategy=StrategyConfig(name="fedavgm" if secure == "he" else "fedadam"),
        ),
        out=out,
        on_status=on_status,
        timeout=TIMEOUT,
    )
    return result, out


def _audit_clean(out: Path) -> None:
    report = audit(
        [out / "records"], roster=out / "roster.json", server_log=out / "server_log.jsonl"
    )
    assert [f for f in report.findings if f.fails] == []
    assert report.passed


@pytest.mark.parametrize("secure", ["plain", "mask", "he"])
def test_three_sites_complete_a_full_run_over_https(tmp_path: Path, secure: str) -> None:
    result, out = _run(tmp_path, secure)
    assert [h["status"] for h in result.history] == ["aggregated", "aggregated"]
    names = ["hospital-a", "hospital-b", "hospital-c"]
    assert all(h["survivors"] == names for h in result.history)
    assert all(s.rounds_trained == 2 and 0 < s.epsilon <= 1.0 for s in result.sites)
    assert (out / "global_model.safetensors").exists()
    _audit_clean(out)


class _KillWhenLogged:
    """SIGKILL ``victim`` as soon as the server's log shows a line matching ``pattern``.

    Started from the first status poll (the children exist by then); reads
    what the server appended to its log every millisecond.
    """

    def __init__(self, victim: str, pattern: str) -> None:
        self.victim = victim
        self.pattern = re.compile(pattern)
        self.killed = False
        self._thread: threading.Thread | None = None

    def __call__(self, status: dict[str, Any], children: dict[str, Child]) -> None:
        if self._thread is None:
            child = children[self.victim]
            self._thread = threading.Thread(target=self._watch, args=(child,), daemon=True)
            self._thread.start()

    def _watch(self, child: Child) -> None:
        log = child.log.parent / "server.log"
        deadline = time.monotonic() + TIMEOUT
        seen = b""
        with log.open("rb") as fh:
            while time.monotonic() < deadline and child.process.poll() is None:
                seen = (seen + fh.read())[-4096:]
                if self.pattern.search(seen.decode("utf-8", errors="replace")):
                    os.kill(child.process.pid, signal.SIGKILL)
                    self.killed = True
                    return
                time.sleep(0.001)


def test_a_site_killed_after_sharing_its_mask_keys_is_recovered_and_the_round_aggregates(
    tmp_path: Path,
) -> None:
    """Four sites (threshold 3 of 4): hospital-d dies right after its key shares are in.

    Its masked input never arrives; the survivors' Shamir shares of its
    pairwise mask seeds let the server remove its masks, so round 2 still
    aggregates the other three and the audit of every record is clean.
    """
    kill = _KillWhenLogged("hospital-d", r"admitted mask/share from hospital-d \(round 2\)")
    # a stage timeout long enough that no live site misses round 1 on a loaded machine
    result, out = _run(tmp_path, "mask", sites=4, rounds=2, stage_timeout=30.0, on_status=kill)
    assert kill.killed, "the victim was never killed"
    first, second = result.history
    rounds = [(h["round"], h["status"], h.get("survivors")) for h in result.history]
    assert first["status"] == "aggregated" and first["num_survivors"] == 4, rounds
    assert second["status"] == "aggregated"
    assert second["survivors"] == ["hospital-a", "hospital-b", "hospital-c"]
    _audit_clean(out)


def test_a_site_killed_in_an_he_round_the_round_closes_with_the_others_and_the_federation_goes_on(
    tmp_path: Path,
) -> None:
    """Four sites in he; hospital-d dies once round 2 opened (while training).

    The server closes round 2 at its deadline with the three updates it
    has (at least three summands), and round 3 runs and aggregates too.
    """
    kill = _KillWhenLogged("hospital-d", r"round 2 opened")
    # the deadline leaves room for three sites to train and encrypt on a loaded 2-core machine
    result, out = _run(tmp_path, "he", sites=4, rounds=3, stage_timeout=30.0, on_status=kill)
    assert kill.killed
    statuses = [h["status"] for h in result.history]
    why = [(h["round"], h["status"], h.get("reason", "")) for h in result.history]
    assert statuses[0] == "aggregated", why
    assert result.history[-1]["round"] == 3 and statuses[-1] == "aggregated", why
    later = [h for h in result.history if h["round"] >= 2]
    assert all("hospital-d" not in h["survivors"] for h in later)
    assert all(h["num_survivors"] == 3 for h in later if h["status"] == "aggregated")
    _audit_clean(out)


def _shape(value: Any) -> Any:
    """The keys of a JSON document, recursively (list items by their first element).

    A round's ``metrics`` is a free-form mapping (whatever the sites report;
    over HTTPS the server's signed round log does not carry it): its type
    counts, not its keys.
    """
    if isinstance(value, dict):
        return {k: ("mapping" if k == "metrics" else _shape(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


def test_simulate_over_https_writes_the_same_summary_as_in_process(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from securefl.cli import cli

    outs = {}
    for transport in ("memory", "https"):
        outs[transport] = tmp_path / transport
        args = ["simulate", "--secure", "plain", "--rounds", "1", "--transport", transport]
        run = CliRunner().invoke(cli, [*args, "--out", str(outs[transport])])
        assert run.exit_code == 0, run.output
    memory, https = (json.loads((outs[t] / "summary.json").read_text()) for t in outs)
    assert _shape(https) == _shape(memory)
    assert https["rounds_completed"] == memory["rounds_completed"] == 1
    assert [s["name"] for s in https["sites"]] == [s["name"] for s in memory["sites"]]
    for folder in outs.values():  # and the same audit set next to it
        assert {p.name for p in folder.iterdir()} >= {
            "summary.json", "roster.json", "records", "server_log.jsonl",
            "global_model.safetensors",
        }  # fmt: skip
        _audit_clean(folder)
