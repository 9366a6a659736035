"""The k-regular graph's sizing recomputed with exact rational arithmetic.

``regular_parameters`` picks the smallest even degree k (and, for it, the
smallest threshold t) whose union bounds meet 2**-40 for privacy and 2**-20
for correctness (``securefl/secagg/_config.py``). A wrong binomial tail
there silently weakens every large cohort, and no protocol test notices: the
masks still cancel. So the tail and the search are redone here with
:class:`fractions.Fraction`, independently of the module. ``regular_parameters``
is memoised, so its cache is cleared around each test: a value computed
before (by another test in the same process) must not stand in for the
computation under test. See ``docs/mutation.md`` ("secagg/ modules").
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction

import pytest

from securefl.secagg import MaskConfig
from securefl.secagg._plan import _binom_tail_ge, max_missing, public_order, regular_parameters


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    regular_parameters.cache_clear()
    yield
    regular_parameters.cache_clear()


def _exact_tail(k: int, p: float, m: int) -> Fraction:
    q = Fraction(p)
    return sum(
        (Fraction(math.comb(k, i)) * q**i * (1 - q) ** (k - i) for i in range(max(m, 0), k + 1)),
        Fraction(0),
    )


@pytest.mark.parametrize("p", [0.0, 0.01, 0.05, 0.1, 0.3, 0.49])
@pytest.mark.parametrize("k", [0, 1, 4, 7, 18, 40])
def test_the_binomial_tail_is_exact(k: int, p: float) -> None:
    for m in range(-1, k + 3):
        want = float(_exact_tail(k, p, m))
        assert _binom_tail_ge(k, p, m) == pytest.approx(want, rel=1e-12, abs=1e-300), (k, p, m)


def _smallest(n: int, g: float, d: float) -> tuple[int, int] | None:
    """The documented search, with exact tails: smallest even k, then smallest t."""
    m, privacy, correctness = max_missing(n, d), Fraction(2) ** -41, Fraction(2) ** -20
    for k in range(4, n - 1, 2):
        for t in range(k // 2 + 1, k + 2):
            split_view = n * _exact_tail(k, g, 2 * t - k - 1)
            ring_split = n * n * _exact_tail(k, g, max(k - m, 2 * t - k - 2))
            if split_view <= privacy and ring_split <= privacy:
                if n * _exact_tail(k + 1, d, k + 2 - t) <= correctness:
                    return k, t
                break
    return None


@pytest.mark.parametrize(
    ("n", "g", "d"),
    [
        (10, 0.0, 0.0),
        (12, 0.01, 0.0),
        (30, 0.0, 0.05),
        (40, 0.0, 0.1),
        (45, 0.01, 0.05),
        (70, 0.05, 0.1),
        (100, 0.05, 0.1),
    ],
)
def test_the_regular_graph_is_the_smallest_meeting_the_bounds(n: int, g: float, d: float) -> None:
    assert regular_parameters(n, g, d) == _smallest(n, g, d)


def test_some_sizes_have_a_regular_graph_and_some_do_not() -> None:
    """So the cases above reach both outcomes of the search."""
    assert regular_parameters(6, 0.05, 0.1) is None
    got = regular_parameters(100, 0.05, 0.1)
    assert got is not None and got[0] < 99 and got[0] % 2 == 0


def test_the_ring_order_is_redrawn_each_round_not_the_id_order() -> None:
    """Nobody picks a site's neighbours: not the ids' sort order, and not the same every round.

    Were the order the sorted cohort, the sites whose ids sort next to a
    victim's would be its neighbours (its share holders) in every round, so
    colluders could be placed there once by choosing their names.
    """
    cohort = tuple(f"site-{i:02d}" for i in range(30))
    cfg = MaskConfig(clip=1.0, complete_graph_max=3, dropout_rate=0.05, corrupt_rate=0.0)
    plans = [cfg.plan(federation="fed", round_id=r, cohort=cohort) for r in (1, 2, 3)]
    assert not plans[0].complete
    orders = [p.order for p in plans]
    assert all(sorted(o) == list(cohort) for o in orders)
    assert len(set(orders)) == 3 and cohort not in orders
    assert public_order("fed", 1, cohort) == orders[0]  # the same for every party
    assert public_order("other", 1, cohort) != orders[0]
    victim = cohort[0]
    assert len({p.neighbours(victim) for p in plans}) == 3
