"""Generate tests/vectors/dp_epsilon.json: (q, σ, steps, δ) -> ε, computed WITHOUT securefl.

Sources, per field of each case:

* ``prv``: Opacus ``PRVAccountant`` fed one ``step()`` per step, ``eps_error=0.01``.
* ``rdp_opacus``: Opacus ``RDPAccountant`` fed one ``step()`` per step (default orders).
* ``rdp_dp_accounting``: Google dp-accounting ``RdpAccountant`` (its own orders
  and conversion): an independent implementation of the same bound.
* ``pld_fine``: dp-accounting ``PLDAccountant`` at value discretisation 1e-4
  (1e-5 where ε < 0.5), pessimistic estimate: at least ten times finer than
  securefl's fixed cap, and finer than its ε-relative choice.
* ``analytic`` (only for q = 1): the exact ε of the Gaussian mechanism
  (Balle & Wang 2018, Theorem 8): δ(ε) = Φ(-εs + 1/(2s)) - e^ε Φ(-εs - 1/(2s))
  with s = σ / √steps (k Gaussians compose to one with σ/√k), solved for ε by
  bisection with the standard library only.

Run: python tests/vectors/generate_dp.py > tests/vectors/dp_epsilon.json
"""

from __future__ import annotations

import json
import math
import sys
import warnings

import dp_accounting
import numpy as np
from dp_accounting import pld, rdp
from opacus.accountants import PRVAccountant, RDPAccountant

GRID = [
    # (sample_rate, noise_multiplier, steps, delta)
    (0.01, 1.0, 300, 1e-5),
    (0.01, 0.8, 100, 1e-5),
    (0.02, 1.5, 500, 1e-6),
    (256 / 60000, 1.1, 60 * 235, 1e-5),  # the MNIST setting of Abadi et al. / Opacus examples
    (0.05, 2.0, 200, 1e-5),
    (0.1, 3.0, 50, 1e-6),
    (1.0, 5.0, 1, 1e-5),  # one-off Gaussian release (feature standardisation)
    (1.0, 10.0, 4, 1e-6),
    # Small ε: a fixed PLD discretisation of 1e-3 reported 0.187 here (issue 12).
    (0.0016, 2.77, 6250, 1e-5),
    (0.01, 4.0, 200, 1e-5),
    # Low noise: Opacus's fractional RDP orders give 1 % less than dp-accounting's.
    (0.1, 0.6, 100, 1e-4),
]


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def analytic_gaussian_epsilon(sigma: float, steps: int, delta: float) -> float:
    s = sigma / math.sqrt(steps)

    def delta_of(eps: float) -> float:
        return _phi(-eps * s + 1 / (2 * s)) - math.exp(eps) * _phi(-eps * s - 1 / (2 * s))

    lo, hi = 0.0, 1.0
    while delta_of(hi) > delta:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if delta_of(mid) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def _stepped(acc, sigma: float, q: float, steps: int):
    for _ in range(steps):
        acc.step(noise_multiplier=sigma, sample_rate=q)
    return acc


def case(q: float, sigma: float, steps: int, delta: float) -> dict[str, object]:
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
    )
    rdp_acc = rdp.RdpAccountant()
    rdp_acc.compose(event)
    rdp_eps = rdp_acc.get_epsilon(delta)
    pld_acc = pld.PLDAccountant(value_discretization_interval=1e-5 if rdp_eps < 0.5 else 1e-4)
    pld_acc.compose(event)
    eps = {
        "prv": _stepped(PRVAccountant(), sigma, q, steps).get_epsilon(delta=delta, eps_error=0.01),
        "rdp_opacus": _stepped(RDPAccountant(), sigma, q, steps).get_epsilon(delta=delta),
        "rdp_dp_accounting": rdp_acc.get_epsilon(delta),
        "pld_fine": pld_acc.get_epsilon(delta),
    }
    if q == 1.0:
        eps["analytic"] = analytic_gaussian_epsilon(sigma, steps, delta)
    return {
        "sample_rate": q,
        "noise_multiplier": sigma,
        "steps": steps,
        "delta": delta,
        "epsilon": {k: float(v) for k, v in eps.items()},
    }


def main() -> None:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = [case(*row) for row in GRID]
    json.dump(
        {
            "description": "epsilon of Poisson-subsampled Gaussian DP-SGD, computed "
            "independently of securefl; see tests/vectors/generate_dp.py",
            "cases": cases,
        },
        sys.stdout,
        indent=2,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
