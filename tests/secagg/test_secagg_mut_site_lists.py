"""A site's list checks against a cheating server: cases the mutation run of
``secagg/_site_lists.py`` asked for.

The first test plays the server and hands one honest site a list an honest
server never sends; the site must refuse it before it acts on it (here:
before it signs). The others check the boundaries from the honest side: a
list exactly at the round's bounds (as few sites as the round needs, exactly
t of the site's holders) is accepted, one step beyond is refused, so a
stricter check cannot stall honest rounds unnoticed. See
``docs/mutation.md`` ("secagg/_site_lists.py").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from secagg_adversary import CheatingServer
from secagg_driver import Federation, random_updates

from securefl.errors import AbortError
from securefl.secagg import MaskConfig, MaskPlan
from securefl.secagg._site_lists import ListChecks

D = 4
MAX_W = 100.0
LOCAL = MaskConfig(
    clip=1.0, complete_graph_max=3, dropout_rate=0.05, corrupt_rate=0.0, neighbourhood=True
)
"""n = 30 on the neighbourhood round: k = 18, t = 10, m = 1, ℓ = 1."""
NAMES = tuple(f"site-{i:02d}" for i in range(30))


def test_a_survivor_list_missing_more_than_m_far_sites_is_not_signed(tmp_path: Path) -> None:
    """The neighbourhood round: the server drops two sites far from the target (m = 1).

    Every one of the target's holders is still on the list, so the target's
    own part passes, and 28 sites are far more than the round's minimum; only
    the cohort-wide cap (at most m missing) is broken. That cap is what keeps
    a server from cutting the ring into arcs whose sums it learns, so the
    site must refuse to sign. The same list with one far site dropped (within
    the cap) is signed.
    """
    fed = Federation(tmp_path, 30, LOCAL)
    ctx = fed.ctx(1, D, MAX_W)
    plan = LOCAL.plan(federation=fed.federation, round_id=1, cohort=fed.names)
    assert plan.local and plan.missing_allowed == 1
    srv = CheatingServer(fed, ctx, fed.sites(ctx))
    srv.advertise(random_updates(fed.names, D), MAX_W)
    srv.share({s: sorted(plan.holders(s)) for s in fed.names})
    srv.mask({s: sorted(plan.holders(s) & set(srv.shares)) for s in fed.names})
    assert set(srv.inputs) == set(fed.names)
    target, within = plan.order[0], plan.order[1]
    far = [s for s in plan.order if s not in plan.holders(target)]
    two_missing = sorted(set(fed.names) - set(far[:2]))
    one_missing = sorted(set(fed.names) - set(far[2:3]))
    assert plan.holders(target) <= set(two_missing)
    assert len(two_missing) >= plan.threshold
    srv.sign({target: two_missing, within: one_missing})
    assert target in srv.aborted and target not in srv.sigs
    assert within not in srv.aborted and within in srv.sigs


# -- the boundaries an honest round may reach ---------------------------------------


def _checks(need: int, threshold: int | None = None) -> tuple[ListChecks, MaskPlan]:
    plan = LOCAL.plan(federation="fed", round_id=1, cohort=NAMES)
    if threshold is not None:
        plan = dataclasses.replace(plan, threshold=threshold)
    return ListChecks(plan, NAMES, plan.order[0], need), plan


def test_a_survivor_list_exactly_as_long_as_the_round_needs_is_accepted() -> None:
    """n = 30, m = 1, and the round needs 29 sites (a deployment's ``min_sites``).

    The list with one site missing meets both bounds exactly and is signed;
    with two missing it is refused.
    """
    checks, plan = _checks(need=29)
    assert plan.missing_allowed == 1
    far = [s for s in plan.order if s not in checks.holders]
    checks.cohort_list(sorted(set(NAMES) - {far[0]}), "the survivor list")
    with pytest.raises(AbortError):
        checks.cohort_list(sorted(set(NAMES) - set(far[:2])), "the survivor list")


def test_a_list_with_exactly_t_of_the_sites_holders_is_accepted() -> None:
    """k = 18 with t = 18, so ℓ = min(m, k + 1 − t) = 1: exactly t of the 19 holders remain.

    The round's bounds allow it (t holders, one missing), so the site accepts
    it; one holder fewer is below t and is refused.
    """
    checks, plan = _checks(need=18, threshold=18)
    assert plan.k == 18 and plan.local_missing == 1 and len(checks.holders) == 19
    me = plan.order[0]
    others = sorted(checks.holders - {me})
    exactly_t = {me, *others[1:]}
    assert len(exactly_t) == plan.threshold
    checks.local_part(exactly_t, "the survivor list")
    checks.members(sorted(exactly_t), "the share senders")
    with pytest.raises(AbortError):
        checks.local_part({me, *others[2:]}, "the survivor list")
