"""Benchmark the CSPRNG Gaussian noise against the floating-point noise it replaces.

Run ``python bench/noise.py`` (``--repeat R`` keeps the best of R runs).

For models of d = 1e4, 1e5 and 1e6 parameters at noise multiplier 1 and
clip 1, one DP-SGD step's noise:

* ``secure``: :class:`securefl.dp.noise.SecureGaussianNoise.privatize`
  (round to the grid, exact discrete Gaussian from AES-256-CTR, back to
  float64), the default;
* ``torch``: ``torch.normal`` into a float32 tensor, what Opacus does without
  ``secure_mode`` (and what ``secure_rng=False`` runs);
* ``keystream``: the raw AES-256-CTR keystream for 8 bytes per parameter, the
  floor for anything that reads the CSPRNG once per value.

``ratio`` is secure / torch. The integer plan (one base sample or two) is
shown because the two-sample plan, needed above variance 2^26, doubles the work.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from securefl.dp.noise import SecureGaussianNoise
from securefl.hazmat.dgauss import KeystreamRng


def _best(fn: object, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'d':>9} {'plan':>10} {'secure s':>9} {'torch s':>8} {'ratio':>6} {'keystream s':>12}")
    for d in (10_000, 100_000, 1_000_000):
        mech = SecureGaussianNoise(noise_multiplier=1.0, max_grad_norm=1.0, dims=d)
        summed = np.zeros(d)
        ref = torch.zeros(d)
        secure = _best(lambda m=mech, s=summed: m.privatize(s), args.repeat)
        plain = _best(lambda r=ref: torch.normal(0.0, 1.0, size=r.shape), args.repeat)
        ks = _best(lambda n=d: KeystreamRng().words(n), args.repeat)
        plan = "1 sample" if mech.plan.variance.k == 0 else f"K={mech.plan.variance.k}"
        print(f"{d:>9} {plan:>10} {secure:9.3f} {plain:8.4f} {secure / plain:6.0f} {ks:12.4f}")


if __name__ == "__main__":
    main()
