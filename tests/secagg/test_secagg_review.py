"""Attacks on the hardened mask mode that still get through (each test asserts the protection).

Each test plays a cheating server (and, where named, colluding sites) with
the project's own halves: real :class:`~securefl.secagg.MaskSite` objects
driven by :class:`secagg_adversary.CheatingServer`, which tells each site
what it likes. A test fails while the attack works.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from secagg_adversary import CheatingServer
from secagg_driver import Federation, random_updates

from securefl.hazmat.sign import SigningKey
from securefl.secagg import MaskConfig

MAX_W = 100.0


def big_federation(tmp: Path, n: int, config: MaskConfig) -> Federation:
    """A federation whose ids sort in cohort order beyond 100 sites (site-000, ...)."""
    fed = Federation(tmp, 3, config)
    fed.n, fed.names = n, tuple(f"site-{i:03d}" for i in range(n))
    fed.keys = {s: SigningKey.generate() for s in fed.names}
    fed.roster = {s: k.public_bytes() for s, k in fed.keys.items()}
    return fed


def test_per_site_views_cannot_split_the_regular_ring_within_the_dropout_cap(
    tmp_path: Path,
) -> None:
    """n = 200, corrupt_rate = 0, dropout_rate = 0.05: k = 20, t = 11, m = 10; no colluder.

    The dropout cap counts the sites missing from the list *one site* is
    shown, and on the k-regular graph the consistency signatures only come
    from a site's own holders, so different parts of the ring can be shown
    different lists. Take an arc of 22 consecutive sites between two runs
    R1, R2 of k/2 = 10 sites in the public order. The left half of the arc is
    told "R1 missing", the right half "R2 missing": every list misses 10 <= m
    sites, every arc site keeps k/2 + 1 = t live holders and t signatures
    over its own list, and no arc site masks with a site outside the arc. The
    arc's pairwise masks then cancel among themselves, its self masks are
    released, and the server reads the sum of 22 of the 200 inputs.
    """
    cfg = MaskConfig(clip=1.0, corrupt_rate=0.0, dropout_rate=0.05)
    fed = big_federation(tmp_path, 200, cfg)
    ctx = fed.ctx(1, 4, MAX_W)
    srv = CheatingServer(fed, ctx, fed.sites(ctx))
    plan = srv.plan
    half = plan.k // 2
    assert (plan.k, plan.threshold, plan.missing_allowed) == (20, 11, 10)
    order = list(plan.order)
    r1, arc, r2 = order[:half], order[half : 3 * half + 2], order[3 * half + 2 : 4 * half + 2]
    left, right = arc[: half + 1], arc[half + 1 :]
    everyone = list(fed.names)
    updates = random_updates(fed.names, 4)
    srv.advertise(updates, MAX_W)
    srv.share(dict.fromkeys(arc, everyone))  # the real adverts, one round start for all
    lists = {
        **dict.fromkeys(left, sorted(set(everyone) - set(r1))),
        **dict.fromkeys(right, sorted(set(everyone) - set(r2))),
    }
    assert all(len(everyone) - len(u) <= plan.missing_allowed for u in lists.values())
    srv.mask(lists)
    srv.sign(lists)
    requests = {}
    for group in (left, right):
        sigs = {s: srv.sigs[s] for s in group if s in srv.sigs}
        for s in group:
            requests[s] = (lists[s], [], sigs)
    srv.unmask(requests)
    learned = srv.partial_sum(arc)
    want = sum(np.clip(updates[v].astype(np.float64), -1.0, 1.0) for v in arc)
    assert learned is None, (
        f"the sum of {len(arc)} of {len(everyone)} sites was learned: "
        f"{learned[1:]} ~ {want} (weights {learned[0]:.2f})"
    )
