"""The neighbourhood round's cohort-wide count, attacked where it is tight.

The neighbourhood round needs what the cohort-wide round needs: n - m
(``plan.quorum``) sites of the cohort signing the list a site signed, t of
them among its holders, here proven by one BLS aggregate. What
``MaskPlan.colluders_tolerated`` states for it is min(n - 2m, t,
max(k - m, 2t - k - 2)) - 1. Each test below plays a cheating server with
colluding sites over the real :class:`~securefl.secagg.MaskSite` objects, on
a small ring whose graph is fixed by hand so that the term under attack is
the least one, and shows the attack refused at ``colluders_tolerated`` and,
where one more colluder is enough, working at ``colluders_tolerated + 1``:

- the split view (two survivor lists, the colluders signing both) on
  n = 12, k = 8, t = 6, m = 4, where n - 2m = 4 is the least term;
- the ring cut (two runs of k/2 sites claimed dropped or colluding around
  an arc) on n = 30, k = 8, t = 6, m = 3, where k - m = 5 is the least term.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from secagg_adversary import Colluders
from secagg_driver import Federation, random_updates, wide_federation
from test_secagg_review import _arc_sum_with_colluders

from securefl.secagg import MaskConfig, MaskPlan, _config

D = 4
MAX_W = 100.0


def _ring(
    tmp: Path, monkeypatch: pytest.MonkeyPatch, n: int, kt: tuple[int, int], dropout: float
) -> tuple[Federation, MaskPlan]:
    """A neighbourhood round on n sites with degree and threshold ``kt`` fixed by hand."""
    monkeypatch.setattr(_config, "regular_parameters", lambda n_, g, d: kt)
    config = MaskConfig(
        clip=1.0,
        complete_graph_max=3,
        dropout_rate=dropout,
        corrupt_rate=0.0,
        neighbourhood=True,
    )
    fed = wide_federation(tmp, n, config)
    plan = config.plan(federation=fed.federation, round_id=1, cohort=fed.names)
    assert plan.local and (plan.k, plan.threshold) == kt
    return fed, plan


# -- the split view: n - 2m is the least term ------------------------------------

SPLIT = (12, (8, 6), 0.34)
"""n = 12, k = 8, t = 6, m = 4, ℓ = 3: tolerated = min(4, 6, max(4, 2)) - 1 = 3."""


def _split_view(
    tmp: Path, monkeypatch: pytest.MonkeyPatch, colluding: int, shown_dropped: int
) -> tuple[Colluders, str, dict[str, np.ndarray], dict[str, list[str]]]:
    """The victim v at ring position 0; ``colluding`` of its neighbours, nearest first, collude.

    The first ``shown_dropped`` honest sites to the right of v are shown
    "v dropped", every other honest site (v too) "everyone survived"; each
    signs what it is shown, the colluders sign both lists and hand over every
    share they hold. Every honest holder of v is then sent the aggregate of every
    signature over its own list (the server's best), with v in its dropped
    list when it is shown v dropped. A holder of v shown
    "everyone" releases v's self-mask share, one shown "v dropped" its
    masking-key share; every other site is left alone.
    """
    n, kt, dropout = SPLIT
    fed, plan = _ring(tmp, monkeypatch, n, kt, dropout)
    at = list(plan.order)
    victim = at[0]
    nearest = [at[d % n] for d in (1, -1, 2, -2, 3, -3, 4, -4)]
    colluders = nearest[:colluding]
    right = [at[d] for d in range(1, n) if at[d] not in colluders]
    dropped_side = set(right[:shown_dropped])
    everyone = list(fed.names)
    without = sorted(set(everyone) - {victim})
    ctx = fed.ctx(1, D, MAX_W)
    srv = Colluders(fed, ctx, fed.sites(ctx))
    updates = random_updates(fed.names, D)
    srv.advertise(updates, MAX_W)
    srv.share({s: sorted(plan.holders(s)) for s in everyone})
    srv.mask({s: sorted(plan.holders(s)) for s in everyone})
    srv.steal(colluders)
    lists = {s: (without if s in dropped_side else everyone) for s in everyone}
    honest = {s: lists[s] for s in everyone if s not in colluders}
    srv.sign(honest)
    requests = {}
    for s, own in honest.items():
        if s not in plan.holders(victim):
            continue  # only v's holders have shares of v to give
        sigs = {u: sig for u, sig in srv.sigs.items() if lists[u] == own}
        sigs.update({c: srv.sign_as(c, own) for c in colluders})
        dropped = [victim] if own is without and victim in plan.holders(s) else []
        requests[s] = (own, dropped, sigs)
    srv.unmask(requests)
    return srv, victim, updates, lists


def test_the_split_view_with_tolerated_colluders_is_refused_however_the_ring_is_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3 colluders (``colluders_tolerated``): 9 honest signers cannot give both lists n - m = 8.

    Whichever number of honest sites the server shows "v dropped", one list
    falls short of the quorum, its sites release nothing, and v's update is
    never read: shares leave honest sites under one list at most.
    """
    for shown_dropped in range(10):
        srv, victim, _, lists = _split_view(
            tmp_path / f"split-{shown_dropped}", monkeypatch, 3, shown_dropped
        )
        plan = srv.plan
        assert (plan.quorum, plan.colluders_tolerated) == (8, 3)
        assert not srv.both_secrets(victim), f"v's update read ({shown_dropped} shown v dropped)"
        released_under = {tuple(lists[s]) for s in srv.released}
        assert len(released_under) <= 1, "shares released under two survivor lists"
        for own in {tuple(lst) for lst in lists.values()}:
            signed = sum(lists[u] == list(own) for u in srv.sigs) + 3
            asked = [
                s for s in srv.plan.holders(victim) if s in srv.sigs and tuple(lists[s]) == own
            ]
            if signed < plan.quorum:  # every holder of v shown this list refuses it
                assert set(asked) <= set(srv.aborted)
                assert all("consistency signatures" in str(srv.aborted[s]) for s in asked)


def test_the_split_view_works_with_one_colluder_more_than_tolerated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound is tight here: 4 = n - 2m colluders sign both lists, 4 honest sites each.

    Each list then has n - m = 8 signers and every releasing site has t of
    them among its holders; v's self mask and masking key are rebuilt and its
    update is read. This is the least count at which the split view works.
    """
    srv, victim, updates, _ = _split_view(tmp_path, monkeypatch, 4, 4)
    plan = srv.plan
    assert (
        len(srv.held) == plan.colluders_tolerated + 1 == len(plan.cohort) - 2 * plan.missing_allowed
    )
    assert not srv.aborted, srv.aborted
    assert srv.both_secrets(victim)
    x = srv.read_update(victim, plan.neighbours(victim))
    assert np.allclose(x[1:], np.clip(updates[victim], -1.0, 1.0), atol=1e-3)


# -- the ring cut: k - m is the least term ---------------------------------------

CUT = (30, (8, 6), 0.1)
"""n = 30, k = 8, t = 6, m = 3, ℓ = 3: tolerated = min(24, 6, max(5, 2)) - 1 = 4."""


def _ring_cut(
    tmp: Path, monkeypatch: pytest.MonkeyPatch, colluding: int, dropped: int
) -> tuple[Colluders, list[str], list[str], dict[str, Any]]:
    """Cut two runs of k/2 sites around an arc of k sites, as the cohort-wide round's test does.

    ``dropped`` run sites (at the run ends away from the arc) are claimed
    dropped before sharing, ``colluding`` of the others collude; every
    listed site is shown its holders' adverts and one cohort list, and signs
    it. The arc sites mask with no one outside the arc but the runs: with
    the colluders' masking keys and b-shares the arc's sum is read.
    """
    n, kt, dropout = CUT
    fed, plan = _ring(tmp, monkeypatch, n, kt, dropout)
    half = plan.k // 2
    order = list(plan.order)
    runs = (order[:half], order[3 * half : 4 * half])
    arc = order[half : 3 * half]
    cut0 = (dropped + 1) // 2
    gone = [*runs[0][:cut0], *runs[1][half - (dropped - cut0) :]]
    colluders = [s for s in (*runs[0], *runs[1]) if s not in gone][:colluding]
    listed = sorted(set(fed.names) - set(gone))
    ctx = fed.ctx(1, D, MAX_W)
    srv = Colluders(fed, ctx, {s: h for s, h in fed.sites(ctx).items()})
    updates = random_updates(fed.names, D)
    srv.advertise(updates, MAX_W)
    shown = {s: sorted(plan.holders(s) & set(listed)) for s in listed}
    srv.share(shown)
    masking_keys = {c: srv.sites[c]._s for c in colluders}  # the colluders' memory
    srv.mask(shown)
    srv.steal(colluders)
    srv.sign(dict.fromkeys(listed, listed))
    srv.unmask(dict.fromkeys(arc, (listed, [], dict(srv.sigs))))
    return srv, arc, colluders, {"updates": updates, "keys": masking_keys}


def test_the_ring_cut_with_tolerated_colluders_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4 colluders (``colluders_tolerated`` = k - m - 1): the cut needs m + 1 = 4 claimed dropped.

    Every site refuses a survivor list missing more than m, and such a list
    could not gather n - m signers either: no share leaves an arc site and
    the arc's sum is not read.
    """
    srv, arc, colluders, extra = _ring_cut(tmp_path, monkeypatch, 4, 4)
    plan = srv.plan
    assert len(colluders) == plan.colluders_tolerated == plan.k - plan.missing_allowed - 1
    learned = _arc_sum_with_colluders(srv, arc, colluders, extra["keys"])
    assert learned is None, "the arc's sum was read"
    assert not srv.released and set(arc) <= set(srv.aborted)


def test_the_ring_cut_works_with_one_colluder_more_than_tolerated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound is tight here: k - m = 5 colluders and m = 3 dropped read the 8-site arc's sum.

    Every listed site signs the one list (n - m = 27 signers), so the
    quorum holds; what it cannot stop is a cut of k sites of which m are
    missing: the count ``plan`` states is the one that holds.
    """
    plan_m = 3
    srv, arc, colluders, extra = _ring_cut(tmp_path, monkeypatch, 5, plan_m)
    plan = srv.plan
    assert plan.missing_allowed == plan_m and len(colluders) == plan.colluders_tolerated + 1
    assert not srv.aborted, srv.aborted
    learned = _arc_sum_with_colluders(srv, arc, colluders, extra["keys"])
    updates = extra["updates"]
    want = sum(np.clip(updates[v].astype(np.float64), -1.0, 1.0) for v in arc)
    assert learned is not None and np.allclose(learned[1:], want, atol=1e-2)
