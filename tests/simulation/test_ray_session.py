"""A local Ray started for a run stops with it, however the run ends, and leaves no process."""

import os
import time
from pathlib import Path

import pytest

ray = pytest.importorskip(
    "ray", reason='the Ray backend needs Ray: pip install -e ".[dev]" (the ray extra) installs it'
)

from securefl.config import DPConfig, FederationConfig, RoundConfig, StrategyConfig  # noqa: E402
from securefl.data import breast_cancer_federation  # noqa: E402
from securefl.simulation.ray_backend import RayOptions, run_ray_simulation  # noqa: E402

pytestmark = pytest.mark.slow


def _children(pid: int) -> set[int]:
    """Every live process descending from ``pid`` (zombies count as gone)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_a_local_ray_started_for_the_run_is_shut_down_when_it_stops(tmp_path, monkeypatch, stop):
    if ray.is_initialized():
        pytest.skip("a Ray already runs in this process; this test needs to start its own")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    before = _children(os.getpid())
    ray_processes: set[int] = set()

    def stop_in_round_one(driver):
        ray_processes.update(_children(os.getpid()) - before)
        raise stop("stopped by the test")

    config = FederationConfig(
        secure="plain",
        dp=DPConfig(epsilon=1.0, batch_size=16),
        rounds=RoundConfig(max_rounds=3, stage_timeout_seconds=60),
        strategy=StrategyConfig(),
    )
    with pytest.raises(stop):
        run_ray_simulation(
            breast_cancer_federation(sites=3, seed=1),
            config,
            options=RayOptions(workers=1),
            out=tmp_path,
            on_progress=stop_in_round_one,
        )
    assert not ray.is_initialized()
    assert ray_processes, "the run started Ray's processes (gcs, raylet, a worker) as children"
    deadline = time.monotonic() + 60  # shutdown is asynchronous: wait for the processes to exit
    while ray_processes & _children(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not ray_processes & _children(os.getpid()), "Ray left processes running"
    assert (tmp_path / "summary.json").exists()  # what completed was kept
