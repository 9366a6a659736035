"""ε strictly grows with the steps a site takes and strictly falls with its noise.

The monotonicity properties in ``test_dp_accounting.py`` compare with ``>=``
and ``<=``, which an accountant that ignores the steps (or the noise) also
satisfies: it reports the same ε for 100 steps as for 200. Here the change
is large enough that every accountant must move ε by a clear margin.
"""

from __future__ import annotations

import pytest

from securefl.dp import epsilon
from securefl.dp.events import DPEvent


def _eps(sigma: float, steps: int, accountant: str) -> float:
    event = DPEvent(
        noise_multiplier=sigma, sample_rate=0.02, steps=steps, max_grad_norm=1.0, secure_rng=True
    )
    return epsilon([event], delta=1e-5, accountant=accountant)


@pytest.mark.parametrize("accountant", ["rdp", "prv", "pld"])
def test_twice_the_steps_cost_clearly_more_and_more_noise_clearly_less(accountant: str) -> None:
    base = _eps(1.0, 100, accountant)
    assert _eps(1.0, 200, accountant) > 1.2 * base
    assert _eps(1.5, 100, accountant) < base / 1.2
