"""Real processes: the he keymaker site is SIGKILLed mid-round and its client started again.

The same kit, the same state folder, a new ``securefl client`` process, as
an operator would do after a reboot. The keymaker is the hardest site to
lose: it holds the federation's HE secret key, which it must not make
again. The run finishes; the restarted site decrypts the whole history
with the keys it kept, takes part in the next (last) round, its ledger holds no
pending round, and the audit of every record against the server's signed
round log passes (the round it was killed in is charged and recorded).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from securefl.config import DPConfig, FederationConfig, RoundConfig, StrategyConfig, TrainConfig
from securefl.data.federations import breast_cancer_federation
from securefl.dp import PrivacyLedger
from securefl.reports import read_record_file
from securefl.reports.audit import audit
from securefl.simulation.https_run import run_https_simulation
from securefl.simulation.processes import Child, spawn
from securefl.simulation.site_process import DATA_ENV

pytestmark = pytest.mark.slow

TIMEOUT = 240.0
VICTIM = "hospital-a"  # the keymaker: the first site by name


class _KillAndRestart:
    """SIGKILL the victim once the server logs ``pattern``, then start its client again."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)
        self.killed = False
        self.restarted: Child | None = None
        self._thread: threading.Thread | None = None

    def __call__(self, status: dict[str, Any], children: dict[str, Child]) -> None:
        if self._thread is None:
            child = children[VICTIM]
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
                    child.process.wait()
                    self.killed = True
                    break
                time.sleep(0.001)
        if not self.killed:
            return
        args = [str(a) for a in child.process.args][3:]  # the same `securefl client --kit ...`
        kit = Path(args[args.index("--kit") + 1])
        csv = kit.parent.parent / "data" / f"{VICTIM}.csv"
        self.restarted = spawn(f"{VICTIM}-restarted", args, child.log.parent, {DATA_ENV: str(csv)})


def test_the_he_keymaker_killed_mid_round_restarts_on_its_kit_and_the_run_finishes(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    hook = _KillAndRestart(r"round 1 opened")
    try:
        result = run_https_simulation(
            breast_cancer_federation(sites=3, seed=0),
            FederationConfig(
                secure="he",
                dp=DPConfig(epsilon=2.0, batch_size=32, max_grad_norm=0.5),
                train=TrainConfig(learning_rate=1.0),
                rounds=RoundConfig(max_rounds=2, min_sites=2, stage_timeout_seconds=15.0),
                strategy=StrategyConfig(name="fedavgm"),
            ),
            out=out,
            on_status=hook,
            timeout=TIMEOUT,
            keep=True,
        )
        restarted = hook.restarted
        assert hook.killed and restarted is not None
        restarted.process.wait(timeout=60)
        assert restarted.exit_code == 0, restarted.tail(20)
    finally:
        if hook.restarted is not None:
            hook.restarted.stop()
    kit_state = Path(str(restarted.process.args[5])) / "state"
    try:
        _check(result, out, kit_state)
    finally:
        shutil.rmtree(kit_state.parents[2], ignore_errors=True)  # the kept run folder


def _check(result: Any, out: Path, kit_state: Path) -> None:
    why = [(h["round"], h["status"], h["survivors"]) for h in result.history]
    assert result.history[-1]["round"] == 2 and result.history[-1]["status"] == "aggregated", why
    assert VICTIM in result.history[-1]["survivors"], why  # back, with the keys it kept
    records, bad = read_record_file(out / "records" / f"{VICTIM}.jsonl")
    assert bad == [] and [r.record["round_id"] for r in records] == [1, 2]
    report = audit(
        [out / "records"], roster=out / "roster.json", server_log=out / "server_log.jsonl"
    )
    assert [f for f in report.findings if f.fails] == []
    first = records[0].record
    with PrivacyLedger(
        kit_state / "ledger.sqlite", site=VICTIM, epsilon_budget=2.0, delta=first["delta"],
        accountant=first["accountant"],
    ) as ledger:  # fmt: skip
        assert ledger.pending() == []
        assert ledger.spent() == pytest.approx(records[-1].record["epsilon"], rel=1e-9)
    assert (kit_state / "he_keymaker.bin").stat().st_mode & 0o777 == 0o600
