"""A cheating server that claims restarts (new run ids) to reuse a round's signatures.

Since round ids are named by (federation, run, round), a site masks again
under round 1 of a run id it has not seen: a server that restarts on a new
state folder counts from 1 again, and a site cannot tell a real restart
from a claimed one. What a site signs in one run must therefore not count
in another. Each test plays the cheating server with real site halves
(:class:`secagg_adversary.CheatingServer`) and fails while the attack works.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
from secagg_adversary import CheatingServer
from secagg_driver import random_updates
from test_secagg_review import MAX_W, big_federation

from securefl.aggregation.base import RoundContext
from securefl.secagg import MaskConfig


def _run_ctx(base: RoundContext, run: str) -> RoundContext:
    """Round ``base.round`` of ``run``; the runtime's digest covers the run, so it differs too."""
    digest = hashlib.sha256(base.round_digest + run.encode()).digest()
    return dataclasses.replace(base, run=run, round_digest=digest)


def test_consistency_signatures_of_an_earlier_run_cannot_split_the_regular_ring(
    tmp_path: Path,
) -> None:
    """n = 200, k = 20, t = 11, m = 10; no colluder; three claimed runs of round 1.

    The attack of ``test_per_site_views_cannot_split_the_regular_ring_within_the_dropout_cap``
    fails because each list needs n - m = 190 signatures from the cohort. Here
    the server first runs round 1 twice under two fresh run ids ("restarts")
    and shows everyone one list each time: "R1 missing" in run A, "R2
    missing" in run C. 190 sites sign each. Then, in run B, it shows the two
    halves of the arc the two lists and hands each arc site the 190
    signatures over its list from the earlier run. If a signature does not
    name its run, every arc site finds its quorum and releases the b-shares,
    and the server reads the sum of the 22 arc sites.
    """
    cfg = MaskConfig(clip=1.0, corrupt_rate=0.0, dropout_rate=0.05)
    fed = big_federation(tmp_path, 200, cfg)
    base = fed.ctx(1, 4, MAX_W)
    everyone = list(fed.names)

    def collect(run: str, listed: list[str]) -> dict[str, bytes]:
        """One claimed run of round 1 that shows every site ``listed`` and keeps the signatures."""
        ctx = _run_ctx(base, run)
        srv = CheatingServer(fed, ctx, fed.sites(ctx))
        srv.advertise(random_updates(fed.names, 4), MAX_W)
        srv.share(dict.fromkeys(everyone, everyone))
        srv.mask(dict.fromkeys(everyone, listed))
        srv.sign(dict.fromkeys(listed, listed))
        assert len(srv.sigs) == srv.plan.quorum  # every listed site signed
        return dict(srv.sigs)  # the server "restarts" here: nothing is unmasked

    probe = CheatingServer(fed, base, {})
    half, order = probe.plan.k // 2, list(probe.plan.order)
    r1, arc, r2 = order[:half], order[half : 3 * half + 2], order[3 * half + 2 : 4 * half + 2]
    first, second = sorted(set(everyone) - set(r1)), sorted(set(everyone) - set(r2))
    replay = {tuple(first): collect("a" * 32, first), tuple(second): collect("c" * 32, second)}

    ctx = _run_ctx(base, "b" * 32)
    srv = CheatingServer(fed, ctx, fed.sites(ctx))
    updates = random_updates(fed.names, 4)
    srv.advertise(updates, MAX_W)
    srv.share(dict.fromkeys(everyone, everyone))
    lists = {s: first for s in everyone}
    lists.update(dict.fromkeys([*arc[half + 1 :], *r1], second))
    srv.mask(lists)
    srv.sign({s: lists[s] for s in arc})
    srv.unmask({s: (lists[s], [], replay[tuple(lists[s])]) for s in arc})
    learned = srv.partial_sum(arc)
    want = sum(np.clip(updates[v].astype(np.float64), -1.0, 1.0) for v in arc)
    assert learned is None, (
        f"the sum of {len(arc)} of {len(everyone)} sites was learned with signatures of "
        f"earlier runs: {learned[1:]} ~ {want}"
    )
    assert set(arc) <= set(srv.aborted) and not srv.released  # no share left an arc site
