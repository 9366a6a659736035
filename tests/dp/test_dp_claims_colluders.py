"""c colluders who subtract their own noise shares still face the noise the central ε assumes.

The adversary: the server unmasks the sum of the fewest sites the protocol
allows (t), and c of those t are colluders who know their own shares and
subtract them. What is left is the honest sites' shares. These tests size
the shares with the code the sites run (:func:`noise_share`) and draw them
with the sampler the sites run (:func:`add_noise_share`), so a share sized
for t contributors instead of t − c turns them red.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.dp.distributed import add_noise_share, noise_share
from securefl.hazmat.dgauss import KeystreamRng


@settings(max_examples=60, deadline=None)
@given(
    t=st.integers(1, 60),
    data=st.data(),
    mu=st.integers(1, 10**9),
)
def test_the_honest_shares_left_after_c_colluders_carry_the_whole_variance(
    t: int, data: st.DataObject, mu: int
) -> None:
    c = data.draw(st.integers(0, t - 1))
    share = noise_share(mu, threshold=t, colluders=c)
    # the fewest sites whose sum is unmasked is t; the c colluders among them remove theirs
    left = (t - c) * share.variance
    assert left >= Fraction(mu)


def test_drawn_shares_left_after_the_colluders_subtract_theirs_have_variance_mu() -> None:
    t, c, mu, n = 6, 2, 400, 40_000
    share = noise_share(mu, threshold=t, colluders=c)
    zeros = np.zeros(n, dtype=np.int64)
    # fixed keys: a deterministic test, the same sampler the sites run
    shares = [add_noise_share(zeros, share, rng=KeystreamRng(bytes([i]) * 32)) for i in range(t)]
    unmasked = np.sum(shares, axis=0)
    residual = unmasked - np.sum(shares[:c], axis=0)  # what the colluders cannot remove
    assert residual.var() >= 0.97 * mu
