"""Benchmark mask mode: site and server time against the AES-CTR keystream bound.

Run ``python bench/secagg.py`` (n in {5, 20, 100}, d in {1e5, 1e6}, 0/1/2
sites dropped after sharing keys and at unmasking, as far as the default
threshold tolerates: one at n=5) or ``--quick`` (n=5, d=1e5); ``--n 20 --d
1000000`` selects rows, ``--repeat R`` reports the best of R rounds per row
(the keystream bound is itself a best-of time, and a shared machine adds
noise only upwards). Every party runs in this process;
envelopes go to their receiver as soon as they are produced, so at most one
masked vector waits at a time.

Columns: ``site`` is the mean time per site across all its stages;
``site/ks`` divides it by the time to generate the raw AES-256-CTR
keystream for the mask bytes that site expands (1 + neighbours masks of
(d+1) uint32 words), measured in the same run. ``server`` is the server's
total time; ``srv/ks`` divides it by the keystream time for the masks it must
regenerate (one self mask per survivor, one pairwise mask per surviving
neighbour of each site dropped after sharing keys); ``srv/sum`` divides it by
a plaintext sum of n float32 vectors. ``B/param`` is the upload per
parameter of the masked input.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from securefl.aggregation.base import RoundContext
from securefl.hazmat.sign import SigningKey
from securefl.secagg import STAGES, MaskConfig, MaskServerMode, MaskSiteMode
from securefl.wire import SERVER, Envelope, unpack

MASKED_INPUT, UNMASK = "mask/masked-input", "mask/unmask"
_CASE = itertools.count()


def keystream_time(nbytes: int, repeat: int = 3) -> float:
    """Best-of time to produce ``nbytes`` of AES-256-CTR keystream in 1 MiB chunks."""
    chunk = 1 << 20
    zeros, out = bytes(chunk), bytearray(chunk + 15)
    best = float("inf")
    for _ in range(repeat):
        enc = Cipher(algorithms.AES256(bytes(32)), modes.CTR(bytes(16))).encryptor()
        t0 = time.perf_counter()
        left = nbytes
        while left > 0:
            k = min(chunk, left)
            enc.update_into(zeros[:k], out)
            left -= k
        best = min(best, time.perf_counter() - t0)
    return best


def plain_sum_time(n: int, d: int, vec: np.ndarray) -> float:
    t0 = time.perf_counter()
    acc = np.zeros(d, dtype=np.float32)
    for _ in range(n):
        acc += vec
    return time.perf_counter() - t0


def run_round(n: int, d: int, drop: dict[str, str], tmp: Path) -> dict[str, float]:
    names = tuple(f"site{i:03d}" for i in range(n))
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
            site_id=s,
            signing_key=keys[s],
            roster=roster,
            state_path=tmp / f"{s}-{next(_CASE)}.json",
            config=cfg,
        ).site(ctx, s)
        for s in names
    }
    site_time = dict.fromkeys(names, 0.0)
    server_time = 0.0
    upload = 0

    def deliver(env: Envelope) -> None:
        nonlocal server_time, upload
        if env.receiver == SERVER:
            cut = drop.get(env.sender)
            if cut is not None and STAGES.index(env.stage) >= STAGES.index(cut):
                return
            if env.stage == MASKED_INPUT:
                upload = len(unpack(env.payload)["y"])
            t0 = time.perf_counter()
            out = server.handle(env)
            server_time += time.perf_counter() - t0
        else:
            t0 = time.perf_counter()
            out = sites[env.receiver].handle(env)
            site_time[env.receiver] += time.perf_counter() - t0
        for e in out:
            deliver(e)

    gen = np.random.default_rng(0)  # benchmark data only, never keys or masks
    vec = (gen.standard_normal(d) * 0.1).astype(np.float32)
    for s in names:
        t0 = time.perf_counter()
        out = sites[s].submit(vec, 50.0)
        site_time[s] += time.perf_counter() - t0
        for e in out:
            deliver(e)
    while server.result is None:  # the dropped sites' stages end on the deadline
        t0 = time.perf_counter()
        out = server.on_deadline()
        server_time += time.perf_counter() - t0
        for e in out:
            deliver(e)
    plan = cfg.plan(federation="bench", round_id=1, cohort=names)
    u2 = {s for s in names if s not in drop or STAGES.index(drop[s]) > 1}
    u3 = {s for s in names if s not in drop or STAGES.index(drop[s]) > 2}
    live = [s for s in names if s not in drop]
    site_masks = np.mean([1 + len(plan.neighbours(s) & u2) for s in live])
    server_masks = len(u3) + sum(len(plan.neighbours(v) & u3) for v in u2 - u3)
    word = 4 * (d + 1)
    return {
        "site": float(np.mean([site_time[s] for s in live])),
        "site_ks": keystream_time(int(site_masks * word)),
        "server": server_time,
        "server_ks": keystream_time(server_masks * word),
        "plain": plain_sum_time(n, d, vec),
        "bpp": upload / (d + 1),
        "k": plan.k,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n=5, d=1e5 only")
    parser.add_argument("--n", type=int, action="append", help="only this n (repeatable)")
    parser.add_argument("--d", type=int, action="append", help="only this d (repeatable)")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many rounds per row")
    args = parser.parse_args()
    sizes = (
        [(5, 100_000)]
        if args.quick
        else [(n, d) for d in (100_000, 1_000_000) for n in (5, 20, 100)]
    )
    sizes = [
        (n, d) for n, d in sizes if (not args.n or n in args.n) and (not args.d or d in args.d)
    ]
    header = (
        f"{'n':>4} {'d':>8} {'k':>3} {'dropped':<16} {'site s':>8} {'site/ks':>8} "
        f"{'server s':>9} {'srv/ks':>7} {'srv/sum':>8} {'B/param':>7}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for n, d in sizes:
            names = [f"site{i:03d}" for i in range(n)]
            plan = MaskConfig(clip=1.0).plan(federation="bench", round_id=1, cohort=tuple(names))
            cases = [("none", {})]
            for k in range(1, min(2, plan.missing_allowed) + 1):
                cases.append((f"{k} after share", dict.fromkeys(names[:k], MASKED_INPUT)))
                cases.append((f"{k} at unmask", dict.fromkeys(names[:k], UNMASK)))
            for label, drop in cases:
                runs = [run_round(n, d, drop, tmp) for _ in range(max(1, args.repeat))]
                r = {k: min(run[k] for run in runs) for k in runs[0]}
                print(
                    f"{n:>4} {d:>8} {int(r['k']):>3} {label:<16} {r['site']:>8.3f} "
                    f"{r['site'] / r['site_ks']:>8.2f} {r['server']:>9.3f} "
                    f"{r['server'] / r['server_ks']:>7.2f} {r['server'] / r['plain']:>8.1f} "
                    f"{r['bpp']:>7.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
