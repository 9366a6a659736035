"""A site's list checks against a cheating server: cases the mutation run of
``secagg/_site_lists.py`` asked for.

Each test plays the server and hands one honest site a list an honest server
never sends; the site must refuse it before it acts on it (here: before it
signs). See ``docs/mutation.md`` ("secagg/_site_lists.py").
"""

from __future__ import annotations

from pathlib import Path

from secagg_adversary import CheatingServer
from secagg_driver import Federation, random_updates

from securefl.secagg import MaskConfig

D = 4
MAX_W = 100.0
LOCAL = MaskConfig(
    clip=1.0, complete_graph_max=3, dropout_rate=0.05, corrupt_rate=0.0, neighbourhood=True
)
"""n = 30 on the neighbourhood round: k = 18, t = 10, m = 1, ℓ = 1."""


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
