"""Write tests/vectors/dp_noise.json: the CSPRNG noise and sampling, fixed key -> fixed output.

Run from the repository root: ``python tests/vectors/generate_noise.py``.
Deterministic (fixed keys, sorted JSON keys): re-running leaves ``git diff`` empty.

Cross-checks, written out here without securefl:

* the keystream words are AES-256-ECB of the big-endian counter blocks
  0, 1, 2, ... read as little-endian uint64 (AES-CTR with a zero nonce);
* Poisson coins (``bernoulli_rate``) are word < floor(q·2^64), one word per record;
* a Bernoulli(n/m) coin reads words until one falls below B·m, B = floor((2^64 - 1)/m),
  and is heads when that word is below n·B (exactly n of the m blocks of B words);
* single draws (``count = 1``) of the discrete Gaussian are recomputed by a
  scalar transcription of Canonne, Kamath & Steinke (2020), Algorithms 1-3,
  with exact ``Fraction`` thresholds, reading the same keystream words in the
  order the paper's pseudo-code reads them;
* the grid mechanism's plan (γ, Δ, V) is recomputed from its formula.

Vectors of many draws in one call, and the mechanism's outputs, are
self-generated regression values (the vectorised sampler reads the keystream
in a different, stage-by-stage order); their distribution is tested in
``tests/hazmat/test_hazmat_dgauss.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from securefl.dp.noise import SMOOTHING_SIGMA, SecureGaussianNoise, plan_noise
from securefl.hazmat.dgauss import (
    KeystreamRng,
    bernoulli_rate,
    discrete_gaussian,
    gaussian_integers,
    plan_variance,
)

OUT = Path(__file__).resolve().parent / "dp_noise.json"


def det_bytes(label: str, n: int) -> bytes:
    """Fixed, public test input: SHA-256 in counter mode over a label."""
    out, i = b"", 0
    while len(out) < n:
        out += hashlib.sha256(f"securefl-vectors/{label}/{i}".encode()).digest()
        i += 1
    return out[:n]


class RefWords:
    """The keystream read word by word, from AES-256-ECB of counter blocks."""

    def __init__(self, key: bytes) -> None:
        self.ecb = Cipher(algorithms.AES256(key), modes.ECB()).encryptor()
        self.block, self.buffer = 0, []  # type: ignore[var-annotated]

    def word(self) -> int:
        if not self.buffer:
            raw = self.ecb.update(self.block.to_bytes(16, "big"))
            self.block += 1
            self.buffer = [int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")]
        return self.buffer.pop(0)

    def below(self, m: int) -> int:
        limit = ((2**64 - 1) // m) * m
        while True:
            w = self.word()
            if w < limit:
                return w % m

    def coin(self, num: int, den: int) -> bool:
        """Bernoulli(num/den): w uniform below B·den (B = floor((2^64-1)/den)), w < num·B."""
        block = (2**64 - 1) // den
        while True:
            w = self.word()
            if w < block * den:
                return w < num * block

    def bern_exp_le1(self, gamma: Fraction) -> bool:  # CKS Algorithm 1
        return self.bern_exp_le1_den(gamma.numerator, gamma.denominator)

    def bern_exp_le1_den(self, num: int, den: int) -> bool:
        # K <- 1; while Bernoulli(γ/K): K <- K + 1; return K odd (exp(-γ), γ = num/den).
        k = 1
        while self.coin(num, den * k):
            k += 1
        return k % 2 == 1

    def discrete_gaussian(self, variance: int) -> int:  # CKS Algorithm 3, σ² = variance
        t = math.isqrt(variance) + 1
        while True:
            u = self.below(t)
            keep = self.bern_exp_le1_den(u, t)
            v = 0
            if keep:
                while v <= 30 and self.bern_exp_le1(Fraction(1)):
                    v += 1
            keep = keep and v <= 30
            negative = self.word() & 1 == 1
            if negative and u == 0 and v == 0:
                keep = False
            if not keep:
                continue
            x = u + t * v
            num, den = (x * t - variance) ** 2, 2 * variance * t * t
            if self.bern_exp_int(num, den):
                return -x if negative else x

    def bern_exp_int(self, num: int, den: int) -> bool:  # CKS Algorithm 2
        for _ in range(num // den):
            if not self.bern_exp_le1(Fraction(1)):
                return False
        return self.bern_exp_le1_den(num % den, den)


def keystream_case(key: bytes) -> dict[str, Any]:
    words = KeystreamRng(key).words(6)
    ref = RefWords(key)
    assert [int(w) for w in words] == [ref.word() for _ in range(6)]
    return {"key": key.hex(), "words": [str(int(w)) for w in words]}


def poisson_case(key: bytes, n: int, rate: float) -> dict[str, Any]:
    mask = bernoulli_rate(KeystreamRng(key), n, rate)
    ref = RefWords(key)
    threshold = math.floor(Fraction(rate) * 2**64)
    assert mask.tolist() == [ref.word() < threshold for _ in range(n)]
    return {"key": key.hex(), "count": n, "rate": rate, "included": np.flatnonzero(mask).tolist()}


def single_draws(key: bytes, variance: int, n: int) -> dict[str, Any]:
    rng, ref = KeystreamRng(key), RefWords(key)
    got = [int(discrete_gaussian(rng, 1, variance)[0]) for _ in range(n)]
    assert got == [ref.discrete_gaussian(variance) for _ in range(n)], variance
    return {"key": key.hex(), "variance": variance, "draws": got}


def batch_draws(key: bytes, variance: int, n: int) -> dict[str, Any]:
    plan = plan_variance(variance)
    values = gaussian_integers(KeystreamRng(key), n, plan)
    return {
        "key": key.hex(),
        "at_least": variance,
        "plan": {"k": plan.k, "fine": plan.fine, "coarse": plan.coarse},
        "values": [int(v) for v in values],
    }


def mechanism_case(key: bytes, sigma: float, clip: float, dims: int) -> dict[str, Any]:
    plan = plan_noise(noise_multiplier=sigma, max_grad_norm=clip, dims=dims)
    # The plan's formula, recomputed.
    steps = min(
        max(1000 * math.sqrt(dims), 2.0**16),
        math.sqrt((2730**2) * 2**26 - SMOOTHING_SIGMA**2) / (sigma * 1.001) - math.sqrt(dims),
    )
    gamma = 2.0 ** math.ceil(math.log2(clip / steps))
    assert plan.granularity == gamma
    assert plan.sensitivity == clip / gamma + math.sqrt(dims)
    assert plan.variance.variance >= (sigma * plan.sensitivity) ** 2 + SMOOTHING_SIGMA**2
    summed = np.frombuffer(det_bytes(f"noise-sum-{dims}", 8 * dims), dtype="<u8")
    summed = (summed.astype(np.float64) / 2.0**64 - 0.5) * 4 * clip
    noise = SecureGaussianNoise._from_parts(
        noise_multiplier=sigma, max_grad_norm=clip, dims=dims, key=key
    )
    out = noise.privatize(summed)
    return {
        "key": key.hex(),
        "noise_multiplier": sigma,
        "max_grad_norm": clip,
        "dims": dims,
        "summed": summed.tolist(),
        "granularity": gamma,
        "variance": plan.variance.variance,
        "released": out.tolist(),
    }


def main() -> None:
    keys = [bytes(32), det_bytes("noise-key-1", 32), det_bytes("noise-key-2", 32)]
    doc = {
        "description": "CSPRNG noise and Poisson sampling; see tests/vectors/generate_noise.py",
        "keystream": [keystream_case(k) for k in keys[:2]],
        "poisson": [poisson_case(keys[1], 40, 0.25), poisson_case(keys[2], 40, 1 / 3)],
        "single_draws": [
            single_draws(keys[0], 1, 12),
            single_draws(keys[1], 10, 12),
            single_draws(keys[2], 1 << 20, 8),
        ],
        "batch_draws": [
            batch_draws(keys[1], 4, 16),
            batch_draws(keys[2], 1 << 26, 16),
            batch_draws(keys[1], 10**13, 16),
        ],
        "mechanism": [
            mechanism_case(keys[1], 1.0, 1.0, 8),
            mechanism_case(keys[2], 0.7, 0.25, 5),
        ],
        "must_fail": {
            "variance": [0, -1, (1 << 26) + 1],
            "rate": [0.0, -0.1, 1.5, "nan"],
            "noise_multiplier": [0.0, -1.0, "nan", "inf"],
            "key_len": [0, 16, 31, 33],
        },
    }
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
