"""How much more noise distributed (Skellam) DP needs than the Gaussian, at the same ε.

    python bench/skellam_accounting.py              # T = 1000 steps, δ = 1e-5
    python bench/skellam_accounting.py --steps 300

For ε ∈ {0.25, 0.5, 1} and q ∈ {0.01, 0.05, 0.2, 1} it calibrates, in one run:

* ``gaussian``: the noise multiplier σ the Poisson-sampled Gaussian needs, with
  dp-accounting's exact sampled-Gaussian RDP (Mironov, Talwar, Zhang 2019) at
  the accountant's orders and the accountant's RDP-to-(ε, δ) conversion;
* ``skellam``: σ = √μ / Δ₂ the Skellam mechanism needs with the bound the
  accountant charges (``securefl.dp.skellam_accounting``);
* ``zhu-wang only``: the same with Zhu & Wang's general bound alone (the charge
  before the add/remove bound), to show what changed;

with ``securefl plan``'s sensitivities (clip worth 1024 integer units, d = 31:
Δ₂ = 1024 + √31, Δ₁ = √31 Δ₂), and prints the ratios to the Gaussian's σ.
Same orders and same conversion on every side, so the ratio is the price of
the bounds, not of a different accountant.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np

from securefl.dp.skellam_accounting import ORDERS, rdp_to_epsilon, skellam_epsilon, skellam_rdp
from securefl.dp.skellam_subsampling import zhu_wang_general_rdp

DELTA = 1e-5
CLIP_UNITS, DIMENSION = 1024.0, 31
L2 = CLIP_UNITS + math.sqrt(DIMENSION)
L1 = math.sqrt(DIMENSION) * L2


def gaussian_epsilon(sigma: float, q: float, steps: int) -> float:
    from dp_accounting.rdp import rdp_privacy_accountant as r

    if q == 1.0:
        curve = np.array(ORDERS, dtype=np.float64) / (2 * sigma**2)
    else:
        curve = np.asarray(r._compute_rdp_poisson_subsampled_gaussian(q, sigma, list(ORDERS)))
    return rdp_to_epsilon(ORDERS, steps * curve, DELTA)


def skellam_charged(sigma: float, q: float, steps: int) -> float:
    mu = (sigma * L2) ** 2
    return skellam_epsilon(
        mu=mu, l1_sensitivity=L1, l2_sensitivity=L2, sample_rate=q, steps=steps, delta=DELTA
    )


def skellam_general_only(sigma: float, q: float, steps: int) -> float:
    base = skellam_rdp(
        range(2, max(ORDERS) + 1), mu=(sigma * L2) ** 2, l1_sensitivity=L1, l2_sensitivity=L2
    )
    unsampled = base[np.array(ORDERS) - 2]
    curve = np.minimum(zhu_wang_general_rdp(base, sample_rate=q, orders=ORDERS), unsampled)
    return rdp_to_epsilon(ORDERS, steps * curve, DELTA)


def calibrate(eps: Callable[[float], float], target: float) -> float:
    """Smallest σ (within 0.1 %) with eps(σ) <= target; every ε here decreases in σ."""
    lo, hi = 0.05, 0.1
    while eps(hi) > target:
        lo, hi = hi, hi * 2
    while hi / lo > 1.001:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if eps(mid) <= target else (mid, hi)
    return hi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.01, 0.05, 0.2, 1.0])
    parser.add_argument("--no-general", action="store_true", help="skip the Zhu-Wang-only column")
    args = parser.parse_args()
    start = time.perf_counter()
    print(f"noise multiplier σ to reach ε at δ = {DELTA:g}, T = {args.steps} steps")
    print("| ε | q | gaussian σ | skellam σ | ratio | zhu-wang only σ | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for target in args.epsilons:
        for q in args.rates:
            steps = args.steps

            def gauss(s: float, q: float = q, steps: int = steps) -> float:
                return gaussian_epsilon(s, q, steps)

            def ours(s: float, q: float = q, steps: int = steps) -> float:
                return skellam_charged(s, q, steps)

            def old(s: float, q: float = q, steps: int = steps) -> float:
                return skellam_general_only(s, q, steps)

            g = calibrate(gauss, target)
            s = calibrate(ours, target)
            row = f"| {target:g} | {q:g} | {g:.3f} | {s:.3f} | {s / g:.2f} |"
            if args.no_general:
                row += " – | – |"
            else:
                z = calibrate(old, target)
                row += f" {z:.3f} | {z / g:.2f} |"
            print(row, flush=True)
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
