"""One round of mask mode at growing n, every party in one process: what a site costs.

Run ``python bench/scale.py`` (n in {10, 50, 100, 200}, d = 1e5); ``--n 10
--n 50`` selects rows, ``--d`` sets the model size. Each n runs in a fresh
child process, so ``peak MB`` is that round's own peak resident memory
(``ru_maxrss``: Python, NumPy and every party's state, all in one process).

Columns: ``graph`` is ``complete`` up to ``MaskConfig.complete_graph_max``
(64 sites) and ``k-regular`` above, with ``k`` the neighbours each site
masks with. ``round s`` is the wall time of the whole round; ``site s`` the
mean time a site spends in all its stages (min and max across sites);
``server s`` the server's total; ``site KB`` the bytes a site sends plus the
bytes it receives (payloads of every envelope to or from it).

What it shows today: above the cut-off a site masks with only k neighbours,
but it still receives and verifies every site's key advert and
consistency signature, so its bytes and its Ed25519 time grow like n, not
like k. Sending each site only its neighbourhood is the next step (see
docs/scale.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from securefl.aggregation.base import RoundContext
from securefl.hazmat.sign import SigningKey
from securefl.secagg import MaskConfig, MaskServerMode, MaskSiteMode
from securefl.wire import SERVER, Envelope


def one_round(n: int, d: int, tmp: Path) -> dict[str, float]:
    """Run one mask round with ``n`` sites of dimension ``d``; costs and bytes."""
    names = tuple(f"site{i:04d}" for i in range(n))
    keys = {s: SigningKey.generate() for s in names}
    roster = {s: k.public_bytes() for s, k in keys.items()}
    cfg = MaskConfig(clip=1.0)
    ctx = RoundContext(
        federation="bench",
        round=1,
        cohort=names,
        dimension=d,
        max_weight=100.0,
        round_digest=hashlib.sha256(b"the round start every site received").digest(),
    )
    server = MaskServerMode(roster=roster, config=cfg).server(ctx)
    sites = {
        s: MaskSiteMode(
            site_id=s, signing_key=keys[s], roster=roster, state_path=tmp / f"{s}.json", config=cfg
        ).site(ctx, s)
        for s in names
    }
    site_time = dict.fromkeys(names, 0.0)
    site_bytes = dict.fromkeys(names, 0)
    server_time = 0.0
    queue: list[Envelope] = []

    def timed_site(name: str, fn: object, *args: object) -> None:
        t0 = time.perf_counter()
        out = fn(*args)  # type: ignore[operator]
        site_time[name] += time.perf_counter() - t0
        queue.extend(out)

    gen = np.random.default_rng(0)  # benchmark data only, never keys or masks
    vec = (gen.standard_normal(d) * 0.1).astype(np.float32)
    start = time.perf_counter()
    for s in names:
        timed_site(s, sites[s].submit, vec, 50.0)
    while queue or server.result is None:
        if not queue:
            t0 = time.perf_counter()
            queue.extend(server.on_deadline())
            server_time += time.perf_counter() - t0
            continue
        env = queue.pop(0)
        if env.receiver == SERVER:
            site_bytes[env.sender] += len(env.payload)
            t0 = time.perf_counter()
            queue.extend(server.handle(env))
            server_time += time.perf_counter() - t0
        else:
            site_bytes[env.receiver] += len(env.payload)
            timed_site(env.receiver, sites[env.receiver].handle, env)
    wall = time.perf_counter() - start
    plan = cfg.plan(federation="bench", round_id=1, cohort=names)
    costs = list(site_time.values())
    return {
        "n": n,
        "k": plan.k,
        "complete": plan.complete,
        "wall": wall,
        "site": float(np.mean(costs)),
        "site_min": min(costs),
        "site_max": max(costs),
        "server": server_time,
        "site_kb": float(np.mean(list(site_bytes.values()))) / 1024,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="only this n (repeatable)")
    parser.add_argument("--d", type=int, default=100_000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(one_round(args.child, args.d, Path(tmp))))
        return
    print(f"mask, one round, d = {args.d}, every party in this process (one child per row)")
    header = (
        f"{'n':>5} {'graph':<10} {'k':>4} {'round s':>8} {'site s':>7} {'(min-max)':>13} "
        f"{'server s':>9} {'site KB':>9} {'B/param':>8} {'peak MB':>8}"
    )
    print(header)
    print("-" * len(header))
    for n in args.n or [10, 50, 100, 200]:
        line = (
            subprocess.run(
                [sys.executable, __file__, "--child", str(n), "--d", str(args.d)],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        r = json.loads(line)
        graph = "complete" if r["complete"] else "k-regular"
        print(
            f"{n:>5} {graph:<10} {r['k']:>4} {r['wall']:>8.2f} {r['site']:>7.3f} "
            f"{r['site_min']:>6.3f}-{r['site_max']:<6.3f} {r['server']:>9.2f} "
            f"{r['site_kb']:>9.0f} {r['site_kb'] * 1024 / args.d:>8.2f} {r['peak_mb']:>8.0f}",
            flush=True,
        )
    print(
        "graph: complete up to MaskConfig.complete_graph_max = 64 sites, k-regular above; "
        "a site still receives every advert and consistency signature, so its bytes and "
        "verification time grow like n above the cut-off too."
    )


if __name__ == "__main__":
    main()
