"""Benchmark he mode: bytes, time, error per preset vs float32 and CKKS N=8192 [60,40,40,60].

Run ``python bench/he.py`` (full: d in {1e5, 1e6}, n in {5, 20}) or ``--quick``
(d=1e5, n=5); ``--d``/``--n`` pick one cell and ``--preset`` one preset (the
float32 and reference rows are always printed, the reference only when asked
with ``--preset all``). Five distinct site updates are encrypted; for n=20 they are
reused under other site names (re-signed by each name's identity key), which
costs the server exactly the same. ``aggregate MB/site`` is what each site
downloads per round: the server's encrypted sum (about one upload) plus a
signed header (~150 bytes) per summand; ``decrypt s`` includes checking the
headers' signatures.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from securefl.aggregation.base import RoundContext
from securefl.hazmat.sign import SigningKey
from securefl.he import (
    BFV_N4096,
    CKKS_N4096,
    CKKS_N8192,
    CKKS_N8192_4PRIMES,
    HEPreset,
    HEServerMode,
    HESiteMode,
    SecretContext,
    decrypt_aggregate,
    preset_by_name,
)
from securefl.he._messages import encode_update
from securefl.he._trust import chunks_digest, update_message
from securefl.wire import Envelope, unpack

REFERENCE = CKKS_N8192_4PRIMES
PRESETS = (BFV_N4096, CKKS_N4096, CKKS_N8192, CKKS_N8192_4PRIMES)


def run(
    d: int,
    n: int,
    workers: int,
    presets: tuple[HEPreset, ...] = PRESETS,
) -> list[dict[str, float | str]]:
    gen = np.random.default_rng(0)  # benchmark data only
    distinct = min(n, 5)
    xs = [(gen.normal(size=d) * 0.01).astype(np.float32) for _ in range(distinct)]
    ws = [float(10 + 10 * i) for i in range(distinct)]
    cohort = tuple(f"site{i:02d}" for i in range(n))
    site_w = {s: ws[i % distinct] for i, s in enumerate(cohort)}
    ref = sum(site_w[s] * xs[i % distinct].astype(np.float64) for i, s in enumerate(cohort))
    ref = ref / sum(site_w.values())
    rc = RoundContext(federation="bench", round=0, cohort=cohort, dimension=d, max_weight=100.0)

    rows: list[dict[str, float | str]] = []
    t0 = time.perf_counter()
    acc = np.zeros(d, dtype=np.float64)
    for i in range(n):
        acc += site_w[cohort[i]] * xs[i % distinct]
    rows.append(
        {
            "preset": "float32 plain",
            "enc": 0.0,
            "bytes": 4.0 * d,
            "download": 4.0 * d,
            "server": time.perf_counter() - t0,
            "dec": 0.0,
            "err": 0.0,
        }
    )
    keys = {s: SigningKey.generate() for s in cohort}
    roster = {s: k.public_bytes() for s, k in keys.items()}
    for preset in presets:
        clip = 0.1 if preset.scheme == "bfv" else 1.0
        secret = SecretContext.generate(preset, clip=clip)
        public = secret.signed_public_context(
            federation="bench", maker=cohort[0], signing_key=keys[cohort[0]]
        )
        modes = [
            HESiteMode(
                secret,
                site_id=cohort[i],
                signing_key=keys[cohort[i]],
                max_weight=rc.max_weight,
                workers=workers,
            )
            for i in range(distinct)
        ]
        envs: list[Envelope] = []
        enc = 0.0
        for i in range(distinct):
            modes[i].warm_up()  # a site starts its helpers once, before training
            t0 = time.perf_counter()
            envs.extend(modes[i].site(rc, cohort[i]).submit(xs[i], ws[i]))
            enc += time.perf_counter() - t0
            modes[i].close()
        sent = [_as_site(envs[i % distinct], s, keys[s], secret, rc) for i, s in enumerate(cohort)]
        server = HEServerMode(public, roster=roster, federation="bench").server(rc)
        t0 = time.perf_counter()
        for env in sent:
            server.handle(env)
        srv = time.perf_counter() - t0
        res = server.result
        assert res is not None and len(res.survivors) == n
        t0 = time.perf_counter()
        assert isinstance(res.encrypted_sum, bytes)
        mean = decrypt_aggregate(
            secret,
            res.encrypted_sum,
            res.total_weight,
            d,
            roster=roster,
            federation="bench",
            max_weight=rc.max_weight,
        )
        dec = time.perf_counter() - t0
        err = float(np.max(np.abs(mean - ref)) / np.max(np.abs(ref)))
        rows.append(
            {
                "preset": preset.name,
                "enc": enc / distinct,
                "bytes": float(np.mean([len(e.payload) for e in envs])),
                "download": float(len(res.encrypted_sum)),
                "server": srv,
                "dec": dec,
                "err": err,
            }
        )
    return rows


def _as_site(
    env: Envelope, site: str, key: SigningKey, secret: SecretContext, rc: RoundContext
) -> Envelope:
    """``env``'s ciphertexts re-signed as ``site`` (a benchmark shortcut, not a protocol step)."""
    if env.sender == site:
        return env
    obj = unpack(env.payload)
    message = update_message(
        federation=rc.federation,
        round_id=rc.round,
        site=site,
        key_id=secret.key_id,
        preset=secret.preset.name,
        dimension=rc.dimension,
        weight=obj["weight"],
        max_weight=rc.max_weight,
        round_digest=obj["round_digest"],
        digest=chunks_digest(obj["chunks"]),
    )
    payload = encode_update(
        preset=obj["preset"],
        key_id=obj["key_id"],
        weight=obj["weight"],
        dimension=obj["dimension"],
        round_digest=obj["round_digest"],
        chunks=obj["chunks"],
        signature=key.sign(message),
    )
    return Envelope(
        federation=env.federation,
        round=env.round,
        stage=env.stage,
        sender=site,
        receiver=env.receiver,
        payload=payload,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="d=1e5, n=5 only")
    parser.add_argument("--workers", type=int, default=2, help="encryption workers per site")
    parser.add_argument("--d", type=float, default=None, help="one dimension (e.g. 1e6)")
    parser.add_argument("--n", type=int, default=None, help="one cohort size (e.g. 20)")
    parser.add_argument("--preset", default="all", help="one preset name, or all")
    args = parser.parse_args()
    if args.d is not None or args.n is not None:
        grid = [(int(args.d or 1e6), args.n or 20)]
    elif args.quick:
        grid = [(100_000, 5)]
    else:
        grid = [(100_000, 5), (100_000, 20), (1_000_000, 5), (1_000_000, 20)]
    presets = PRESETS if args.preset == "all" else (preset_by_name(args.preset),)
    print(
        "| d | n | preset | encrypt s | MB/site | ×f32 | ×ref bytes | server s | ×ref server "
        "| aggregate MB/site | decrypt s | rel. error |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for d, n in grid:
        rows = run(d, n, args.workers, presets)
        refrow = next((r for r in rows if r["preset"] == REFERENCE.name), rows[-1])
        for r in rows:
            b, s = float(r["bytes"]), float(r["server"])
            print(
                f"| {d:.0e} | {n} | {r['preset']} | {float(r['enc']):.3f} | {b / 1e6:.2f} "
                f"| {b / (4 * d):.2f} | {b / float(refrow['bytes']):.2f} | {s:.3f} "
                f"| {s / float(refrow['server']):.2f} | {float(r['download']) / 1e6:.2f} "
                f"| {float(r['dec']):.3f} "
                f"| {float(r['err']):.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
