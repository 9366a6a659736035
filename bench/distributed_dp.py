"""Benchmark the distributed-DP building blocks on one core.

Run ``python bench/distributed_dp.py`` (``--repeat R`` keeps the best of R runs).

For d = 1e4 and 1e5 coordinates, one site's work per round:

* ``table``: building the exact Poisson proposal table for the share's
  mean (once per run: cached per mean);
* ``skellam``: one Skellam share Sk(μ/(t - c)) per coordinate, exact, from
  AES-256-CTR (two Poisson draws per coordinate);
* ``round``: randomized rounding of the scaled clipped sum;
* ``keystream``: the raw AES-256-CTR keystream for 24 bytes per coordinate,
  about what the sampler reads (a floor for any exact sampler on it).

Share variances cover a 3-site cohort (t - c = 2) at noise multiplier 1,
clip 1 and scales 2^8 .. 2^16 integers per unit (μ = (C·s + sqrt(d))²), up
to a mean above the table's limit, which is split into pieces.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from fractions import Fraction

import numpy as np

from securefl.dp.distributed import noise_share, randomized_round, sensitivity
from securefl.hazmat import skellam as sk
from securefl.hazmat.dgauss import KeystreamRng


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{'d':>7} {'scale':>7} {'share var':>12} {'pieces':>6} {'table s':>8} "
        f"{'skellam s':>9} {'round s':>8} {'keystream s':>11}"
    )
    for d in (10_000, 100_000):
        grads = np.random.default_rng(0).standard_normal(d) / math.sqrt(d)  # a bench input
        for log_scale in (8, 12, 16):
            scale = 2.0**log_scale
            l2 = sensitivity(clip=1.0, scale=scale, dimension=d).l2
            share = noise_share(math.ceil(l2) ** 2, threshold=3, colluders=1)
            lam = share.variance / 2
            pieces = -(-lam // sk.TABLE_MAX_MEAN)
            sk._build.cache_clear()
            start = time.perf_counter()
            sk._build(Fraction(lam) / pieces)
            table = time.perf_counter() - start
            var, n, g, s = share.variance, d, grads, scale
            noise = _best(lambda: sk.skellam(KeystreamRng(), n, var), args.repeat)  # noqa: B023
            rounding = _best(lambda: randomized_round(g, scale=s), args.repeat)  # noqa: B023
            stream = _best(lambda: KeystreamRng().words(3 * n), args.repeat)  # noqa: B023
            print(
                f"{d:>7} {'2^' + str(log_scale):>7} {float(share.variance):>12.4g} "
                f"{int(pieces):>6} {table:>8.3f} {noise:>9.3f} {rounding:>8.4f} {stream:>11.4f}"
            )


if __name__ == "__main__":
    main()
