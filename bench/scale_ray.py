"""One round of ``simulate --secure mask`` on Ray at growing n, against the in-process backend.

Run ``python bench/scale_ray.py`` (n in {10, 50, 100, 200, 500}); ``--n 10
--n 50`` selects rows, ``--workers`` sets the site pools (default 2, the
cores of the machine it was measured on), ``--inprocess-max`` the largest n
also run in-process (default 200). Every measurement runs in a fresh child
process, so Ray starts and stops with it and its peak memory is its own.

The federation is what ``simulate --backend ray --sites N --partition
dirichlet:1`` runs for one round: the built-in model on the generated task
(``--sites`` above 10), DP-SGD at every site (ε = 1), SecAgg+ masking (the
complete graph up to 64 sites, the k-regular graph above). What the model
size costs on the wire is bench/scale.py's subject (d = 1e5); here d is the
built-in model's.

Columns: ``round s`` is the round's wall time, from the server opening it to
its aggregate (every site's training, masking and the unmasking); ``site
ms`` the CPU a site costs in that round (the pools', or the in-process
run's, CPU over n; the server's excluded); ``server ms`` the server loop's
own CPU in the round (the driver thread: the protocol, and on Ray the calls
to the pools); ``site KB`` the bytes a site sends and receives (envelopes as
encoded); ``peak MB`` the run's peak memory: on Ray the sum of the
proportional set sizes (PSS, so Ray's shared object store is counted once)
of the driver, the pools and Ray's own processes, sampled every 0.2 s; in
process the process's peak resident size. ``x`` columns divide Ray's value
by the in-process one, for the n that also ran in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROUNDS = 1


def _config() -> Any:
    from securefl.config import DPConfig, FederationConfig, RoundConfig, StrategyConfig

    return FederationConfig(
        name="bench",
        secure="mask",
        dp=DPConfig(epsilon=1.0, batch_size=32),
        rounds=RoundConfig(max_rounds=ROUNDS, min_sites=2, stage_timeout_seconds=900),
        strategy=StrategyConfig(),
    )


class _Round:
    """Times the round from the server's progress callbacks (called in the server's thread)."""

    def __init__(self, pools: list[Any] | None = None) -> None:
        self.start = self.end = 0.0
        self.server_cpu0 = self.server_cpu1 = 0.0
        self.process_cpu0 = self.process_cpu1 = 0.0
        self.pool_cpu0 = self.pool_cpu1 = 0.0
        self._pools = pools or []

    def _pool_cpu(self) -> float:
        if not self._pools:
            return 0.0
        import ray

        return sum(cpu for cpu, _ in ray.get([p.usage.remote() for p in self._pools]))

    def __call__(self, driver: Any) -> None:
        if driver.current_round >= 1 and not self.start:
            self.pool_cpu0 = self._pool_cpu()
            self.start = time.perf_counter()
            self.server_cpu0, self.process_cpu0 = time.thread_time(), time.process_time()
        if driver.history and not self.end:
            self.end = time.perf_counter()
            self.server_cpu1, self.process_cpu1 = time.thread_time(), time.process_time()
            self.pool_cpu1 = self._pool_cpu()


class _PssSampler(threading.Thread):
    """The peak, over time, of the summed PSS of this process and all its descendants."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.2):
            self.peak = max(self.peak, _tree_pss(os.getpid()))

    def stop(self) -> int:
        self._done.set()
        self.join()
        return max(self.peak, _tree_pss(os.getpid()))


def _tree_pss(root: int) -> int:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - tree
        tree |= frontier
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _data(n: int) -> Any:
    from securefl.data.partition import partitioned_federation

    return partitioned_federation(sites=n, alpha=1.0, seed=0, batch_size=32)


def measure_ray(n: int, workers: int) -> dict[str, float]:
    """One round on Ray with ``workers`` local pools (run in its own process)."""
    import tempfile

    import ray

    from securefl.simulation.ray_backend import RayOptions, ray_session, serve, start_run

    data, config = _data(n), _config()
    sampler = _PssSampler()
    sampler.start()
    options = RayOptions(workers=workers)
    with tempfile.TemporaryDirectory() as tmp, ray_session(options):
        run = start_run(ray, data, config, options, Path(tmp), seed=0, dropouts={})
        clock = _Round(run.pools)
        serve(run, clock)
        link = run.link
        site_bytes = sum(link.bytes_to.values()) + sum(link.bytes_from.values())
        pool_cpu = clock.pool_cpu1 - clock.pool_cpu0
    peak = sampler.stop()
    return {
        "round_s": clock.end - clock.start,
        "site_ms": 1000 * pool_cpu / n,
        "server_ms": 1000 * (clock.server_cpu1 - clock.server_cpu0),
        "site_kb": site_bytes / n / 1024,
        "shared_kb": link.bytes_shared / 1024,
        "peak_mb": peak / 2**20,
    }


def measure_inprocess(n: int) -> dict[str, float]:
    """One round with every party in this process (run in its own process)."""
    from securefl.simulation.orchestrator import run_simulation

    clock = _Round()
    run_simulation(_data(n), _config(), on_progress=clock)
    server = clock.server_cpu1 - clock.server_cpu0
    sites = (clock.process_cpu1 - clock.process_cpu0) - server
    return {
        "round_s": clock.end - clock.start,
        "site_ms": 1000 * sites / n,
        "server_ms": 1000 * server,
        "site_kb": float("nan"),
        "shared_kb": float("nan"),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _child(backend: str, n: int, workers: int) -> dict[str, float]:
    out = subprocess.run(  # a fresh process per row: its own Ray, its own peak memory
        [sys.executable, __file__, "--one", backend, "--n", str(n), "--workers", str(workers)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _ratio(a: float, b: float | None) -> str:
    return f"{a / b:>6.2f}" if b else f"{'—':>6}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="sites (repeatable)")
    parser.add_argument("--workers", type=int, default=2, help="site pools (Ray actors)")
    parser.add_argument("--inprocess-max", type=int, default=200, help="largest n run in-process")
    parser.add_argument("--one", choices=("ray", "inprocess"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        n = args.n[0]
        row = measure_ray(n, args.workers) if args.one == "ray" else measure_inprocess(n)
        print(json.dumps(row))
        return
    ns = args.n or [10, 50, 100, 200, 500]
    print(
        f"one round of mask, ε = 1, generated data (dirichlet:1), {args.workers} local Ray "
        "workers; x = Ray / in-process"
    )
    print(
        f"{'n':>5} {'round s':>8} {'x':>6} {'site ms':>8} {'x':>6} {'server ms':>10} "
        f"{'site KB':>8} {'peak MB':>8} {'x':>6} {'in-proc round s':>16} {'in-proc MB':>11}"
    )
    for n in ns:
        far = _child("ray", n, args.workers)
        near = _child("inprocess", n, args.workers) if n <= args.inprocess_max else None
        print(
            f"{n:>5} {far['round_s']:>8.1f} {_ratio(far['round_s'], near and near['round_s'])} "
            f"{far['site_ms']:>8.0f} {_ratio(far['site_ms'], near and near['site_ms'])} "
            f"{far['server_ms']:>10.0f} {far['site_kb']:>8.1f} {far['peak_mb']:>8.0f} "
            f"{_ratio(far['peak_mb'], near and near['peak_mb'])} "
            f"{near['round_s'] if near else float('nan'):>16.1f} "
            f"{near['peak_mb'] if near else float('nan'):>11.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
