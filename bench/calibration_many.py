"""Noise calibration for many sites of different sizes: per site vs anchors + certificates.

Run ``python bench/calibration_many.py`` (``--sites 10 100 500``).

Site sizes are drawn log-normally (median 1,000 records, at least 40), as
hospitals' are; with a batch of 32 and 12 rounds each site has its own
q = 1/batches and steps = 12·batches, as ``Site.privatize`` computes them.

* ``per site``: :func:`~securefl.dp.calibrate_noise` for every site in turn,
  what a federation does today (a repeated (q, steps) is already free: the
  accountant's results are cached, so this costs one calibration per
  distinct size);
* ``many``: :func:`~securefl.dp.calibrate_noise_many`: exact calibration at
  ``anchors`` only, every other site interpolated and certified with one
  accountant call on its own event.

Both start with the accountant caches emptied, in the same run. ``σ excess``
is the largest ``many`` σ over the exact one (noise added, never removed:
every σ was certified ε ≤ target by the exact accountant).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from securefl.dp import accounting, calibrate_noise, calibrate_noise_many
from securefl.dp.calibration_many import ANCHOR_RATIO, _anchors

BATCH, ROUNDS, EPSILON, DELTA = 32, 12, 1.0, 1e-5


def _requests(sites: int, seed: int) -> list[tuple[float, int]]:
    rng = np.random.default_rng(seed)  # site sizes for the benchmark only
    sizes = np.maximum(40, rng.lognormal(np.log(1000), 1.0, sites).astype(int))
    batches = [int(np.ceil(n / BATCH)) for n in sizes]
    return [(1.0 / b, ROUNDS * b) for b in batches]


def _clear() -> None:
    accounting._epsilon_groups.cache_clear()
    accounting.int_order_rdp.cache_clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--anchor-ratio", type=float, default=ANCHOR_RATIO)
    parser.add_argument("--accountant", default="prv")
    args = parser.parse_args()
    calibrate_noise(target_epsilon=EPSILON, delta=DELTA, sample_rate=0.1, steps=120)  # imports
    print(f"accountant={args.accountant}, anchor ratio={args.anchor_ratio}, ε={EPSILON}, δ={DELTA}")
    print(
        f"{'sites':>6} {'distinct':>9} {'per site s':>11} {'s/site':>7} "
        f"{'anchors':>8} {'many s':>7} {'speed-up':>9} {'σ excess':>9}"
    )
    for sites in args.sites:
        requests = _requests(sites, seed=sites)
        _clear()
        start = time.perf_counter()
        exact = [
            calibrate_noise(
                target_epsilon=EPSILON,
                delta=DELTA,
                sample_rate=q,
                steps=n,
                accountant=args.accountant,
            )
            for q, n in requests
        ]
        per_site = time.perf_counter() - start
        _clear()
        start = time.perf_counter()
        many = calibrate_noise_many(
            requests,
            target_epsilon=EPSILON,
            delta=DELTA,
            accountant=args.accountant,
            anchor_ratio=args.anchor_ratio,
        )
        many_s = time.perf_counter() - start
        points = len(_anchors(sorted(set(requests)), args.anchor_ratio))
        excess = max(g / e for g, e in zip(many, exact, strict=True)) - 1
        print(
            f"{sites:>6} {len(set(requests)):>9} {per_site:>11.1f} {per_site / sites:>7.3f} "
            f"{points:>8} {many_s:>7.1f} {per_site / many_s:>8.1f}x {excess:>8.1%}"
        )


if __name__ == "__main__":
    main()
