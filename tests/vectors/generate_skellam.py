"""Write tests/vectors/dp_skellam.json: exact Poisson/Skellam noise and randomized rounding.

Run from the repository root: ``python tests/vectors/generate_skellam.py``.
Deterministic (fixed keys, sorted JSON keys): re-running leaves ``git diff`` empty.

Cross-checks, written out here without securefl's sampler:

* ``poisson`` / ``skellam`` for small means are recomputed by a scalar
  reference that builds the proposal table from *exact* ``Fraction``
  ratios r(k) = λ^(k-m)·m!/k! (w_k = ceil(2^40·r(k)), the window and tail
  masses of the module doc), reads the AES-256-ECB counter-block words in
  the sampler's pass order (all proposals of a pass, then all acceptance
  words), and accepts exactly when U < 2^40·r(k)/w_k. It refuses to decide
  the rare cases (a tail proposal, or a word within one unit of the
  threshold) instead of guessing; none occurs for these keys.
* ``randomized_round`` is recomputed as floor(x) + [w < floor(frac(x)·2^64)]
  with exact ``Fraction`` arithmetic on the float inputs.

The split path (means above ``TABLE_MAX_MEAN``) is a self-generated
regression value; its distribution is tested in
``tests/hazmat/test_hazmat_skellam.py``. ``must_fail`` lists parameters each
public function must refuse.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from generate_noise import RefWords, det_bytes

from securefl.dp.distributed import noise_share, randomized_round
from securefl.hazmat.dgauss import KeystreamRng
from securefl.hazmat.skellam import TABLE_MAX_MEAN, poisson, skellam

OUT = Path(__file__).resolve().parent / "dp_skellam.json"
_B = 40


class Undecided(Exception):
    """A case the scalar reference refuses to decide (regenerate with another key)."""


def ref_table(lam: Fraction) -> tuple[int, list[int], int]:
    """(first k, weights, total) from exact ratios: the module doc's table."""
    m = math.floor(lam)
    width = 7 * math.isqrt(m + 1) + 16
    lo, hi = max(0, m - width), m + width
    r = {m: Fraction(1)}
    for k in range(m + 1, hi + 1):
        r[k] = r[k - 1] * lam / k
    for k in range(m - 1, lo - 1, -1):
        r[k] = r[k + 1] * (k + 1) / lam
    weights = [math.ceil(r[k] * 2**_B) for k in range(lo, hi + 1)]
    rho = lam / (hi + 1)
    total = sum(weights) + math.ceil(weights[-1] * rho / (1 - rho))
    if lo > 0:
        rho_l = Fraction(lo) / lam
        total += math.ceil(weights[0] * rho_l / (1 - rho_l))
    return lo, weights, total


def ref_poisson(ref: RefWords, count: int, lam: Fraction) -> list[int]:
    lo, weights, total = ref_table(lam)
    m = math.floor(lam)
    out: dict[int, int] = {}
    pending = list(range(count))
    while pending:
        limit = ((2**64 - 1) // total) * total
        words = [ref.word() for _ in pending]
        for i in range(len(words)):  # rejected proposal words are redrawn in index order
            while words[i] >= limit:
                words[i] = ref.word()
        us = [w % total for w in words]
        vs = [ref.word() for _ in pending]
        keep = []
        for idx, u, v in zip(pending, us, vs, strict=True):
            if u >= sum(weights):
                raise Undecided("tail proposal")
            acc, k = 0, lo
            for w_k in weights:
                acc += w_k
                if u < acc:
                    break
                k += 1
            w_k = weights[k - lo]
            r = Fraction(1)
            for j in range(min(k, m) + 1, max(k, m) + 1):
                r *= lam / j
            if k < m:
                r = 1 / r
            a = r * 2**_B / w_k
            if Fraction(v + 1, 2**64) <= a:
                out[idx] = k
            elif Fraction(v, 2**64) >= a:
                keep.append(idx)
            else:
                raise Undecided("acceptance word within a unit of the threshold")
        pending = keep
    return [out[i] for i in range(count)]


def poisson_case(label: str, lam: Fraction, count: int, *, checked: bool) -> dict[str, Any]:
    key = det_bytes(label, 32)
    got = poisson(KeystreamRng(key), count, lam)
    if checked:
        assert got.tolist() == ref_poisson(RefWords(key), count, lam), label
    return {
        "key": key.hex(),
        "mean": [lam.numerator, lam.denominator],
        "count": count,
        "values": got.tolist(),
        "cross_checked": checked,
    }


def skellam_case(label: str, mu: Fraction, count: int, *, checked: bool) -> dict[str, Any]:
    key = det_bytes(label, 32)
    got = skellam(KeystreamRng(key), count, mu)
    if checked:
        both = ref_poisson(RefWords(key), 2 * count, mu / 2)
        assert got.tolist() == [a - b for a, b in zip(both[:count], both[count:], strict=True)]
    return {
        "key": key.hex(),
        "variance": [mu.numerator, mu.denominator],
        "count": count,
        "values": got.tolist(),
        "cross_checked": checked,
    }


def rounding_case(label: str, values: list[float], scale: float) -> dict[str, Any]:
    key = det_bytes(label, 32)
    got = randomized_round(np.array(values, dtype=np.float64), scale=scale, rng=KeystreamRng(key))
    ref = RefWords(key)
    expect = []
    for v in values:
        x = Fraction(v) * Fraction(scale)
        base = math.floor(x)
        expect.append(base + (ref.word() < math.floor((x - base) * 2**64)))
    assert got.tolist() == expect, label
    return {"key": key.hex(), "values": [v.hex() for v in values], "scale": scale, "out": expect}


def main() -> None:
    third = Fraction(1, 3)
    doc: dict[str, Any] = {
        "poisson": [
            poisson_case("poisson/third", third, 12, checked=True),
            poisson_case("poisson/five", Fraction(5), 12, checked=True),
            poisson_case("poisson/1000-7", Fraction(1000, 7), 8, checked=True),
            poisson_case("poisson/big", Fraction(10**6), 6, checked=False),
            poisson_case("poisson/split", Fraction(3 * TABLE_MAX_MEAN + 1, 2), 4, checked=False),
        ],
        "skellam": [
            skellam_case("skellam/seven", Fraction(7), 10, checked=True),
            skellam_case(
                "skellam/share",
                noise_share(400, threshold=4, colluders=1).variance,
                10,
                checked=True,
            ),
            skellam_case("skellam/large", Fraction(10**8), 5, checked=False),
        ],
        "rounding": [
            rounding_case("round/mixed", [0.0, 0.5, -0.5, 1.25, -3.75, 1e-30, 2.0**-60, 7.0], 4.0),
            rounding_case("round/scale", [0.1, -0.1, 0.3333, -12.5], 2.0**10),
            rounding_case(
                "round/tiny-negative",
                [-1e-30, -(2.0**-60), -2.77555756e-17, -(2.0**-64), -(2.0**-70), -0.75, -3.0],
                1.0,
            ),
        ],
        "must_fail": {
            "poisson_mean": [0, -1, [1, 2**33], 2**53, "1.5", True],
            "skellam_variance": [0, [1, 2**32], 2**53],
            "share": [
                {"total_variance": 100, "threshold": 3, "colluders": 3},
                {"total_variance": 100, "threshold": 3, "colluders": 5},
                {"total_variance": 0, "threshold": 3, "colluders": 1},
                {"total_variance": -5, "threshold": 3, "colluders": 1},
            ],
            "rounding_scale": [3.0, 0.0, -4.0, "inf", 0.3],
        },
    }
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
