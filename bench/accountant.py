"""Benchmark noise calibration: the current path against the previous one, in one run.

Run ``python bench/accountant.py`` (``--repeat R`` keeps the best of R runs
per row; a shared machine adds noise only upwards).

What is timed is the computation only: every library is imported and warmed
up first, and every cache is cleared before each timed call. Times are CPU
seconds of this process (``time.process_time``, all threads), which a busy
shared machine inflates far less than wall time; ``wall`` is shown too.

Rows:

* ``plan question (prv)``: ``securefl plan --epsilon 1 --sample-rate 0.01
  --steps 300 --accountant prv``, one calibration with the default accountant.
* ``plan question (all)``: the same question with ``--accountant all`` (the
  CLI's default): one calibration per accountant.
* ``simulate start``: what ``securefl simulate`` computes before training with
  its defaults: one calibration per site of the bundled three-site split
  (batch 32, 12 rounds, one local epoch, ε = 1, δ = 1e-5), in one process.
* ``long run (prv)``: q = 0.0016, 6250 steps, ε = 0.8: many steps make every
  accountant call slower.

The previous path (``old``) is reproduced here verbatim: Opacus's
``PRVAccountant`` through ``load_state_dict``, Opacus RDP with its default
orders, dp-accounting PLD at a fixed 1e-3, and a plain bisection on log σ
bracketed with RDP. ``ratio`` is old time / new time; ``σ`` columns show the
two answers agree (each within its tolerance, 0.5 %).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from securefl.dp import accounting
from securefl.dp.calibration import calibrate_noise

DELTA = 1e-5
_Group = tuple[float, float, int]


# ------------------------------------------------------------ the previous path


@lru_cache(maxsize=8192)
def _old_epsilon(groups: tuple[_Group, ...], delta: float, accountant: str) -> float:
    import dp_accounting
    from dp_accounting import pld
    from opacus.accountants import PRVAccountant, RDPAccountant
    from opacus.accountants.analysis import rdp as rdp_analysis

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        orders = RDPAccountant.DEFAULT_ALPHAS
        total = sum(
            rdp_analysis.compute_rdp(q=q, noise_multiplier=s, steps=n, orders=orders)
            for s, q, n in groups
        )
        rdp_eps = float(rdp_analysis.get_privacy_spent(orders=orders, rdp=total, delta=delta)[0])
        if accountant == "rdp" or rdp_eps > 50.0:
            return rdp_eps
        try:
            if accountant == "prv":
                acc = PRVAccountant()
                acc.load_state_dict({"history": list(groups), "mechanism": "prv"})
                return float(acc.get_epsilon(delta=delta, eps_error=0.01))
            pacc = pld.PLDAccountant(value_discretization_interval=1e-3)
            for s, q, n in groups:
                inner = dp_accounting.GaussianDpEvent(s)
                if q < 1.0:
                    inner = dp_accounting.PoissonSampledDpEvent(q, inner)
                pacc.compose(dp_accounting.SelfComposedDpEvent(inner, n))
            return float(pacc.get_epsilon(delta))
        except (RuntimeError, ValueError, FloatingPointError, OverflowError):
            return rdp_eps


def _old_calibrate(*, target: float, q: float, steps: int, accountant: str) -> float:
    def eps_at(sigma: float, acc: str = accountant) -> float:
        return _old_epsilon(((sigma, q, steps),), DELTA, acc)

    hi = 1.0
    while eps_at(hi, "rdp") > target and hi < 1e4:
        hi *= 2.0
    while eps_at(hi) > target:
        hi = min(hi * 2.0, 1e4)
    lo = hi / 2.0
    while eps_at(lo) <= target:
        hi, lo = lo, lo / 2.0
        if lo < 1e-3:
            return hi
    while hi / lo > 1.005:
        mid = math.sqrt(lo * hi)
        if eps_at(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi


# ------------------------------------------------------------ the rows


def _clear() -> None:
    _old_epsilon.cache_clear()
    accountant_caches: list[Callable[..., object]] = [
        accounting._epsilon_groups,
        accounting.int_order_rdp,
    ]
    for fn in accountant_caches:
        fn.cache_clear()  # type: ignore[attr-defined]


def _questions() -> dict[str, list[tuple[float, float, int, str]]]:
    from securefl.cli.simulate import DEFAULT_BATCH, DEFAULT_ROUNDS
    from securefl.data import breast_cancer_federation

    sites = []
    for site in breast_cancer_federation(sites=3).sites:
        batches = math.ceil(len(site.x_train) / DEFAULT_BATCH)
        sites.append((1.0, 1.0 / batches, DEFAULT_ROUNDS * batches, "prv"))
    return {
        "plan question (prv)": [(1.0, 0.01, 300, "prv")],
        "plan question (all)": [(1.0, 0.01, 300, a) for a in ("prv", "rdp", "pld")],
        "simulate start (3 sites)": sites,
        "long run (prv)": [(0.8, 0.0016, 6250, "prv")],
    }


def _timed(run: Callable[[], list[float]], repeat: int) -> tuple[float, float, list[float]]:
    best, wall, answer = math.inf, math.inf, []
    for _ in range(repeat):
        _clear()
        start, start_wall = time.process_time(), time.perf_counter()
        answer = run()
        best = min(best, time.process_time() - start)
        wall = min(wall, time.perf_counter() - start_wall)
    return best, wall, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    questions = _questions()
    # Warm up imports and first-call set-up outside the timed region.
    for acc in ("prv", "rdp", "pld"):
        _old_calibrate(target=1.0, q=0.1, steps=10, accountant=acc)
        calibrate_noise(target_epsilon=1.0, delta=DELTA, sample_rate=0.1, steps=10, accountant=acc)
    print(
        f"{'case':<26} {'old s':>7} {'new s':>7} {'ratio':>6} {'wall old':>9} {'wall new':>9}"
        "  σ old -> σ new"
    )
    for name, rows in questions.items():
        old_t, old_wall, old_sigma = _timed(
            lambda rows=rows: [
                _old_calibrate(target=e, q=q, steps=t, accountant=a) for e, q, t, a in rows
            ],
            args.repeat,
        )
        new_t, new_wall, new_sigma = _timed(
            lambda rows=rows: [
                calibrate_noise(target_epsilon=e, delta=DELTA, sample_rate=q, steps=t, accountant=a)
                for e, q, t, a in rows
            ],
            args.repeat,
        )
        sigmas = ", ".join(f"{o:.4f}->{n:.4f}" for o, n in zip(old_sigma, new_sigma, strict=True))
        print(
            f"{name:<26} {old_t:7.3f} {new_t:7.3f} {old_t / new_t:6.1f} "
            f"{old_wall:9.3f} {new_wall:9.3f}  {sigmas}"
        )


if __name__ == "__main__":
    main()
