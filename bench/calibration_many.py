"""Noise calibration for many sites of different sizes: per site vs once per grid point.

Run ``python bench/calibration_many.py`` (``--sites 10 100 500``, ``--grid 1.02``).

Site sizes are drawn log-normally (median 1,000 records, at least 40), as
hospitals' are; with a batch of 32 and 12 rounds each site has its own
q = 1/batches and steps = 12·batches, as ``Site.privatize`` computes them.

* ``per site``: :func:`~securefl.dp.calibrate_noise` for every site in turn,
  what a federation does today (a repeated (q, steps) is already free: the
  accountant's results are cached, so this costs one calibration per
  distinct size);
* ``grid``: :func:`~securefl.dp.calibration.calibrate_noise_many`, once per
  grid point, each σ rounded up.

Both start with the accountant caches emptied, in the same run. ``σ excess``
is the largest grid σ over the exact one (noise added by the rounding, never
removed: the tests check ε ≤ target at every site under the exact accountant).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from securefl.dp import accounting
from securefl.dp.calibration import DEFAULT_GRID, calibrate_noise, calibrate_noise_many

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
    parser.add_argument("--grid", type=float, default=DEFAULT_GRID)
    parser.add_argument("--accountant", default="prv")
    args = parser.parse_args()
    calibrate_noise(target_epsilon=EPSILON, delta=DELTA, sample_rate=0.1, steps=120)  # imports
    print(f"accountant={args.accountant}, grid={args.grid}, ε={EPSILON}, δ={DELTA}")
    print(
        f"{'sites':>6} {'distinct':>9} {'per site s':>11} {'s/site':>7} "
        f"{'grid points':>12} {'grid s':>7} {'speed-up':>9} {'σ excess':>9}"
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
        grid = calibrate_noise_many(
            requests,
            target_epsilon=EPSILON,
            delta=DELTA,
            accountant=args.accountant,
            grid=args.grid,
        )
        gridded = time.perf_counter() - start
        from securefl.dp.calibration import grid_point

        points = len({grid_point(q, n, args.grid) for q, n in requests})
        excess = max(g / e for g, e in zip(grid, exact, strict=True)) - 1
        print(
            f"{sites:>6} {len(set(requests)):>9} {per_site:>11.1f} {per_site / sites:>7.3f} "
            f"{points:>12} {gridded:>7.1f} {per_site / gridded:>8.1f}x {excess:>8.1%}"
        )


if __name__ == "__main__":
    main()
