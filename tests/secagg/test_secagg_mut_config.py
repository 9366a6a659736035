"""MaskConfig's promises, checked against the plans the sites actually build.

``federation_tolerance(N)`` is what ``securefl plan`` reports: the colluders
withstood in *every* cohort a server may open in an N-site federation. It is
computed without building plans, so here it is recomputed the slow way, from
``plan()`` for every cohort size (a cohort the sites refuse does not count),
for configurations that reach each of its branches: the complete graph, a
threshold set too low for some cohorts, the k-regular graph from its first
size on, a cohort floor (c + 2) above the complete graph's cut-off, and the
neighbourhood round. See ``docs/mutation.md`` ("secagg/ modules").
"""

from __future__ import annotations

import pytest
from secagg_driver import site_names

from securefl.errors import ConfigError
from securefl.secagg import MaskConfig


def _by_plans(cfg: MaskConfig, federation_size: int) -> int | None:
    least: int | None = None
    for n in range(1, federation_size + 1):
        try:
            plan = cfg.plan(
                federation="f", round_id=1, cohort=site_names(n), federation_size=federation_size
            )
        except ConfigError:
            continue  # every site refuses a cohort of this size
        here = min(plan.colluders_tolerated, n - 2)
        least = here if least is None else min(least, here)
    return least


def _exact(
    complete_graph_max: int, corrupt: int | None = None, *, local: bool = False
) -> MaskConfig:
    """No colluder or dropout rate: the k-regular graph is k = 4, t = 3 from n = 6 on."""
    return MaskConfig(
        clip=1.0,
        complete_graph_max=complete_graph_max,
        corrupt=corrupt,
        corrupt_rate=0.0,
        dropout_rate=0.0,
        neighbourhood=local,
    )


CASES = [
    (MaskConfig(clip=1.0), 4),
    (MaskConfig(clip=1.0), 13),
    (MaskConfig(clip=1.0, threshold=6), 8),  # cohorts of 4 and 5 refused (t > n), 6..8 open
    (_exact(8, 3), 8),
    (_exact(5, 3), 10),
    (
        MaskConfig(clip=1.0, complete_graph_max=9, corrupt=8, corrupt_rate=0.01, dropout_rate=0.0),
        10,
    ),
    # c = 66: cohorts below 68 are refused, though the k-regular graph exists from n = 10
    (
        MaskConfig(clip=1.0, complete_graph_max=9, corrupt=66, corrupt_rate=0.01, dropout_rate=0.0),
        70,
    ),
    (_exact(5, local=True), 10),
]


@pytest.mark.parametrize(("cfg", "federation_size"), CASES)
def test_federation_tolerance_is_the_least_over_the_cohorts_sites_accept(
    cfg: MaskConfig, federation_size: int
) -> None:
    want = _by_plans(cfg, federation_size)
    assert want is not None
    assert cfg.federation_tolerance(federation_size) == want


@pytest.mark.parametrize(
    ("cfg", "federation_size"),
    [
        (MaskConfig(clip=1.0, corrupt=10), 5),  # every cohort needs c + 2 = 12 sites
        (MaskConfig(clip=1.0), 2),  # the default policy: every cohort needs 3 sites
    ],
)
def test_a_federation_in_which_no_cohort_can_open_is_refused(
    cfg: MaskConfig, federation_size: int
) -> None:
    assert _by_plans(cfg, federation_size) is None
    with pytest.raises(ConfigError):
        cfg.federation_tolerance(federation_size)


def test_without_a_regular_graph_above_the_cut_off_the_complete_graph_is_used() -> None:
    """n = 6 > complete_graph_max, but no k < n - 1 meets the bounds at the default rates."""
    cohort = site_names(6)
    above = MaskConfig(clip=1.0, complete_graph_max=5).plan(
        federation="f", round_id=1, cohort=cohort
    )
    below = MaskConfig(clip=1.0).plan(federation="f", round_id=1, cohort=cohort)
    assert above.complete and above.order == cohort
    assert (above.k, above.threshold, above.max_missing) == (below.k, below.threshold, None)


@pytest.mark.parametrize("value", [2, 64.0, "64", True])
def test_complete_graph_max_must_be_an_int_of_at_least_min_cohort(value: object) -> None:
    with pytest.raises(ConfigError):
        MaskConfig(clip=1.0, complete_graph_max=value)  # type: ignore[arg-type]
