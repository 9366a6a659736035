"""One round of mask mode at growing n, every party in one process: what a site costs.

Run ``python bench/scale.py`` (n in {10, 50, 100, 200, 500, 1000}, d = 1e5);
``--n 10 --n 50`` selects rows, ``--d`` sets the model size. Each n runs twice,
each in a fresh child process, so ``peak MB`` is that round's own peak
resident memory (``ru_maxrss``: Python, NumPy and every party's state, all in
one process): once with the neighbourhood round (``MaskConfig(neighbourhood=
True)``: a site gets its holders' adverts and its part of each list, and
checks the cohort's n - m consistency signatures as one BLS aggregate) and
once with the cohort-wide round (every advert, n - m Ed25519 signatures),
the "cohort-wide" columns.

Columns: ``graph`` is ``complete`` up to ``MaskConfig.complete_graph_max``
(64 sites) and ``k-regular`` above, with ``k`` the neighbours each site
masks with (below the cut-off both runs are the same protocol). ``site s``
is the mean CPU time a site spends in all its stages of the round (min and
max across sites); ``server s`` the server's; both are CPU time of this
process (``time.process_time``), so that a busy shared machine does not
inflate them as it does the wall time ``round s``. ``site KB`` is the bytes
a site sends plus the bytes it receives (payloads of every envelope to or
from it); ``adv`` the key adverts a site receives and verifies; ``sig`` the
consistency signers it checks (all that signed, at least n - m: as one BLS aggregate in
the neighbourhood round, as that many Ed25519 signatures in the cohort-wide
one). ``roster s`` is what one process pays once to check the roster's BLS
proofs of possession (n pairings, cached per process: every later site mode
and round reuses them), not part of a round. The ``x`` columns are the ratio
to the first k-regular row of the same run (the smallest n above the
cut-off; the first row when there is none): flat above the cut-off is what
the neighbourhood round is for.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from securefl.aggregation.base import RoundContext
from securefl.hazmat.sign import SigningKey
from securefl.secagg import MaskConfig, MaskServerMode, MaskSiteMode, bls_entry
from securefl.secagg import _messages as m
from securefl.wire import SERVER, Envelope


def one_round(n: int, d: int, tmp: Path, *, neighbourhood: bool) -> dict[str, float]:
    """Run one mask round with ``n`` sites of dimension ``d``; costs, bytes and counts."""
    names = tuple(f"site{i:04d}" for i in range(n))
    keys = {s: SigningKey.generate() for s in names}
    roster = {s: k.public_bytes() for s, k in keys.items()}
    # each site's BLS key and proof, as provisioning puts them on the roster
    bls = {s: bls_entry(k) for s, k in keys.items()} if neighbourhood else None
    cfg = MaskConfig(clip=1.0, neighbourhood=neighbourhood)
    ctx = RoundContext(
        federation="bench",
        round=1,
        cohort=names,
        dimension=d,
        max_weight=100.0,
        round_digest=hashlib.sha256(b"the round start every site received").digest(),
    )
    t0 = time.process_time()  # the roster's proofs, checked once in this process
    server_mode = MaskServerMode(roster=roster, config=cfg, bls_roster=bls)
    roster_time = time.process_time() - t0
    server = server_mode.server(ctx)
    sites = {
        s: MaskSiteMode(
            site_id=s,
            signing_key=keys[s],
            roster=roster,
            state_path=tmp / f"{s}.json",
            config=cfg,
            bls_roster=bls,
        ).site(ctx, s)
        for s in names
    }
    site_time = dict.fromkeys(names, 0.0)
    site_bytes = dict.fromkeys(names, 0)
    adverts = dict.fromkeys(names, 0)
    signatures = dict.fromkeys(names, 0)
    server_time = 0.0
    queue: list[Envelope] = []

    def timed_site(name: str, fn: object, *args: object) -> None:
        t0 = time.process_time()
        out = fn(*args)  # type: ignore[operator]
        site_time[name] += time.process_time() - t0
        queue.extend(out)

    gen = np.random.default_rng(0)  # benchmark data only, never keys or masks
    vec = (gen.standard_normal(d) * 0.1).astype(np.float32)
    start = time.perf_counter()
    for s in names:
        timed_site(s, sites[s].submit, vec, 50.0)
    while queue or server.result is None:
        if not queue:
            t0 = time.process_time()
            queue.extend(server.on_deadline())
            server_time += time.process_time() - t0
            continue
        env = queue.pop(0)
        if env.receiver == SERVER:
            site_bytes[env.sender] += len(env.payload)
            t0 = time.process_time()
            queue.extend(server.handle(env))
            server_time += time.process_time() - t0
        else:
            site_bytes[env.receiver] += len(env.payload)
            if env.stage in (m.SHARE_REQUEST, m.UNMASK_REQUEST):  # count outside the timing
                body = m.decode(env.stage, env.payload, cohort_size=n)
                if env.stage == m.SHARE_REQUEST:
                    adverts[env.receiver] += len(body["adverts"])
                elif "signers" in body:  # the neighbourhood round: one aggregate of these
                    signatures[env.receiver] += len(m.unpack_members(names, body["signers"]))
                else:
                    signatures[env.receiver] += len(body["signatures"])
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
        "roster": roster_time,
        "site_kb": float(np.mean(list(site_bytes.values()))) / 1024,
        "adverts": float(np.mean(list(adverts.values()))),
        "signatures": float(np.mean(list(signatures.values()))),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _child(n: int, d: int, *, neighbourhood: bool) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", str(n), "--d", str(d)]
    if not neighbourhood:
        cmd.append("--cohort-wide")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    row: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="only this n (repeatable)")
    parser.add_argument("--d", type=int, default=100_000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cohort-wide", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        with tempfile.TemporaryDirectory() as tmp:
            row = one_round(args.child, args.d, Path(tmp), neighbourhood=not args.cohort_wide)
            print(json.dumps(row))
        return
    print(
        f"mask, one round, d = {args.d}, every party in this process (one child per run); "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the start"
    )
    rows = []
    for n in args.n or [10, 50, 100, 200, 500, 1000]:
        rows.append((_child(n, args.d, neighbourhood=True), _child(n, args.d, neighbourhood=False)))
        print(f"  n = {n} done", file=sys.stderr, flush=True)
    base_r, base_b = next(((r, b) for r, b in rows if not r["complete"]), rows[0])
    header = (
        f"{'n':>5} {'graph':<9} {'k':>3} {'site s':>6} {'(min-max)':>11} {'x':>5} "
        f"{'site KB':>7} {'x':>5} {'adv':>4} {'sig':>4} {'server s':>8} {'roster s':>8} "
        f"{'round s':>7} {'peak MB':>7} | {'cohort-wide: site s':>19} {'x':>5} {'site KB':>7} "
        f"{'x':>5} {'adv':>4} {'sig':>4} {'server s':>8} {'round s':>7}"
    )
    print(header)
    print("-" * len(header))
    for r, b in rows:
        graph = "complete" if r["complete"] else "k-regular"
        print(
            f"{r['n']:>5} {graph:<9} {r['k']:>3} {r['site']:>6.3f} "
            f"{r['site_min']:>5.3f}-{r['site_max']:<5.3f} {r['site'] / base_r['site']:>5.2f} "
            f"{r['site_kb']:>7.0f} {r['site_kb'] / base_r['site_kb']:>5.2f} "
            f"{r['adverts']:>4.0f} {r['signatures']:>4.0f} {r['server']:>8.2f} "
            f"{r['roster']:>8.2f} {r['wall']:>7.1f} {r['peak_mb']:>7.0f} | "
            f"{b['site']:>19.3f} {b['site'] / base_b['site']:>5.2f} {b['site_kb']:>7.0f} "
            f"{b['site_kb'] / base_b['site_kb']:>5.2f} {b['adverts']:>4.0f} "
            f"{b['signatures']:>4.0f} {b['server']:>8.2f} {b['wall']:>7.1f}",
            flush=True,
        )
    print(
        f"x: ratio to the n = {base_r['n']} row of this run. graph: complete up to "
        "MaskConfig.complete_graph_max = 64 sites (both runs the same protocol), k-regular "
        "above."
    )
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end", flush=True)


if __name__ == "__main__":
    main()
