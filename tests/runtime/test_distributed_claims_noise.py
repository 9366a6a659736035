"""Distributed-DP noise takes its randomness only from the project's AES-256-CTR keystream.

``test_a_non_csprng_source_is_refused`` hands the sampler a NumPy generator,
which lacks the keystream's methods and would fail anyway. A source that
looks like :class:`KeystreamRng` (the same ``words`` and ``below``) but is a
seeded Mersenne Twister must be refused too: its noise is predictable, and
predictable noise subtracts out of the sum.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import numpy.typing as npt
import pytest

from securefl.dp.distributed import add_noise_share, noise_share
from securefl.errors import ConfigError
from securefl.hazmat.skellam import poisson, skellam


class _LookAlike:
    """KeystreamRng's interface over a seeded, predictable generator."""

    def __init__(self) -> None:
        self._gen = np.random.default_rng(0)

    def words(self, n: int) -> npt.NDArray[np.uint64]:
        return self._gen.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)

    def below(self, m: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
        return self._gen.integers(0, m, dtype=np.uint64)


def test_a_look_alike_of_the_keystream_is_refused_by_every_sampler() -> None:
    share = noise_share(Fraction(30), threshold=3, colluders=1)
    for draw in (
        lambda rng: poisson(rng, 4, 3),
        lambda rng: skellam(rng, 4, Fraction(30)),
        lambda rng: add_noise_share(np.zeros(4, dtype=np.int64), share, rng=rng),
    ):
        with pytest.raises(ConfigError, match="KeystreamRng"):
            draw(_LookAlike())
