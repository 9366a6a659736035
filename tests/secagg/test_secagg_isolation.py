"""One site isolated by withheld share senders: fewer colluders than ``colluders_tolerated``.

``MaskPlan.colluders_tolerated`` counts what cutting the k-regular ring
costs in *sites* (k - m: the graph is k-connected and at most m sites may
be missing). A cheating server can also cut *edges*: it may tell a site v
that up to ℓ of its neighbours did not share (ℓ = ``plan.local_missing`` in
the neighbourhood round; the cohort-wide round lets v's share senders miss m
cohort sites, which at most ℓ = min(m, k + 1 - t) of its holders can be).
v then never masks with them, although they received v's shares and list v
as surviving. v refuses to sign a list naming them, so the list can miss
only m - 1 sites for n - m signers to remain; the other neighbours of v
must collude: k - ℓ - (m - 1) colluders read v's update alone, with every
check of every site passing. These tests play it on the real sites, at a
small ring in the neighbourhood round and at the defaults (n = 200) in the
cohort-wide round, where it costs 41 colluders against the 53 stated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from secagg_adversary import Colluders
from secagg_driver import random_updates, wide_federation
from test_secagg_neighbourhood_bound import _arc_sum
from test_secagg_neighbourhood_quorum import MAX_W, D, _ring

from securefl.hazmat.keys import KeyPair
from securefl.secagg import MaskConfig

ISOLATE = (16, (6, 5), 0.13)
"""n = 16, k = 6, t = 5, m = ℓ = 2: ``colluders_tolerated`` = min(12, 5, max(4, 2)) - 1 = 3."""


def _isolate(
    tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Colluders, str, dict[str, np.ndarray], dict[str, Any]]:
    """The exact search's breach at n = 16, k = 6, t = 5, m = 2 (3 colluders), on the real sites.

    Ring positions: v = 0; 15, 1 and 3 collude; 2 is claimed dropped (its
    masked input arrives and is ignored). v is told that 13 and 14 did not
    share (ℓ = 2 lets it miss two neighbours), so it masks with 15, 1, 2, 3
    only; 13 and 14 do hold v's shares and mask with v. One list, "all but
    2", is signed by every honest site but v (which refuses a list naming
    13 and 14) and 2, and by the colluders: 11 + 3 = n - m signers. 13 and
    14 release v's self-mask shares (v is listed), 4 and 5 the masking-key
    shares of 2 (listed dropped). With the colluders' shares and masking
    keys every mask of v is removed: its update alone, with 3 colluders.
    """
    n, kt, dropout = ISOLATE
    fed, plan = _ring(tmp, monkeypatch, n, kt, dropout)
    at = list(plan.order)
    victim, claimed = at[0], at[2]
    colluders = [at[15], at[1], at[3]]
    withheld = {at[13], at[14]}
    everyone = list(fed.names)
    listed = sorted(set(everyone) - {claimed})
    ctx = fed.ctx(1, D, MAX_W)
    srv = Colluders(fed, ctx, fed.sites(ctx))
    updates = random_updates(fed.names, D)
    srv.advertise(updates, MAX_W)
    srv.share({s: sorted(plan.holders(s)) for s in everyone})
    keys: dict[str, Any] = {c: srv.sites[c]._s for c in colluders}  # the colluders' memory
    u2 = {s: sorted(plan.holders(s)) for s in everyone}
    u2[victim] = sorted(set(u2[victim]) - withheld)
    srv.mask(u2)
    srv.steal(colluders)
    signers = [s for s in everyone if s not in (*colluders, victim, claimed)]
    srv.sign(dict.fromkeys(signers, listed))
    sigs = {**srv.sigs, **{c: srv.sign_as(c, listed) for c in colluders}}
    asked = sorted((plan.holders(victim) | plan.holders(claimed)) & set(srv.sigs))
    srv.unmask({s: (listed, sorted(set(u2[s]) - set(listed)), sigs) for s in asked})
    s_claimed = srv._secret(claimed, "s")
    if s_claimed is not None:
        keys[claimed] = KeyPair.from_private_bytes(s_claimed)
    return srv, victim, updates, keys


def test_withheld_share_senders_isolate_one_site_with_colluders_tolerated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A limit of the stated count: 3 = ``colluders_tolerated`` colluders read one update.

    ``colluders_tolerated`` counts the ring cut in sites (k - m), but a site
    may be told that up to ℓ neighbours did not share, and then never masks
    with them although they hold its shares and list it: isolating one site
    costs at most k - ℓ - (m - 1) colluders (the quorum leaves room for m - 1
    claimed dropouts once the isolated site does not sign). Here 3, at
    n = 200 with the defaults 41 (of 53 stated). The cohort-wide round
    lets a site miss m share senders and has the same gap. Every check of
    every site passes.
    """
    srv, victim, updates, keys = _isolate(tmp_path, monkeypatch)
    plan = srv.plan
    k, m, ell = plan.k, plan.missing_allowed, plan.local_missing
    assert len(srv.held) == plan.colluders_tolerated == k - ell - (m - 1) == 3
    assert not (set(srv.aborted) & set(srv.released)), srv.aborted
    learned = _arc_sum(srv, [victim], keys)
    assert learned is not None, "the update was not read"
    assert np.allclose(learned[1:], np.clip(updates[victim], -1.0, 1.0), atol=1e-3)


def _isolate_at_the_defaults(
    tmp: Path,
) -> tuple[Colluders, str, dict[str, np.ndarray], dict[str, Any]]:
    """Cohort-wide round, n = 200, defaults (k = 80, t = 54, m = 20): v at ring position 0.

    Its neighbours at offsets ±1..±20 and +21 collude (41), those at -21..-39
    are claimed dropped (19), those at +22..+40 and -40 are withheld from v's
    share senders (20 <= m). Everyone else but v signs "all but the 19":
    139 + 41 = 180 = n - m signers.
    """
    fed = wide_federation(tmp, 200, MaskConfig(clip=1.0))
    ctx = fed.ctx(1, D, MAX_W)
    srv = Colluders(fed, ctx, fed.sites(ctx))
    plan = srv.plan
    assert not plan.local and (plan.k, plan.threshold, plan.missing_allowed) == (80, 54, 20)
    n, order = len(plan.order), list(plan.order)
    at = {d: order[d % n] for d in range(-40, 41)}
    victim = at[0]
    colluders = [at[d] for d in (*range(-20, 0), *range(1, 22))]
    claimed = [at[d] for d in range(-39, -20)]
    withheld = {at[d] for d in (*range(22, 41), -40)}
    everyone = list(fed.names)
    listed = sorted(set(everyone) - set(claimed))
    updates = random_updates(fed.names, D)
    srv.advertise(updates, MAX_W)
    srv.share(dict.fromkeys(everyone, everyone))
    keys: dict[str, Any] = {c: srv.sites[c]._s for c in colluders}
    u2 = {s: everyone for s in everyone}
    u2[victim] = sorted(set(everyone) - withheld)
    srv.mask(u2)
    srv.steal(colluders)
    signers = [s for s in everyone if s not in {*colluders, *claimed, victim}]
    srv.sign(dict.fromkeys(signers, listed))
    sigs = {**srv.sigs, **{c: srv.sign_as(c, listed) for c in colluders}}
    near = set(plan.holders(victim)).union(*(plan.holders(d) for d in claimed))
    asked = sorted(near & set(srv.sigs))
    srv.unmask({s: (listed, sorted(claimed), sigs) for s in asked})
    for d in claimed:
        s_d = srv._secret(d, "s")
        if s_d is not None:
            keys[d] = KeyPair.from_private_bytes(s_d)
    return srv, victim, updates, keys


def test_withheld_share_senders_isolate_one_site_with_41_colluders_at_the_defaults(
    tmp_path: Path,
) -> None:
    """Cohort-wide round, n = 200: ``plan`` states 53 colluders; 41 read one update."""
    srv, victim, updates, keys = _isolate_at_the_defaults(tmp_path)
    plan = srv.plan
    k, m, ell = plan.k, plan.missing_allowed, plan.local_missing
    assert plan.colluders_tolerated == 53 and len(srv.held) == k - ell - (m - 1) == 41
    assert not (set(srv.aborted) & set(srv.released)), srv.aborted
    learned = _arc_sum(srv, [victim], keys)
    assert learned is not None, "the update was not read"
    assert np.allclose(learned[1:], np.clip(updates[victim], -1.0, 1.0), atol=1e-3)


def test_the_exact_search_finds_the_isolation_at_colluders_tolerated() -> None:
    """n = 16, k = 6, t = 5, m = ℓ = 2, the round as built (n - m of the cohort signing one list).

    The search (``neighbourhood_search``) finds a partial sum with 3 =
    ``colluders_tolerated`` colluders: the breach replayed above, a single
    site whose share senders miss ℓ neighbours.
    """
    from neighbourhood_search import search

    n, k, t, m = 16, 6, 5, 2
    tolerated = min(n - 2 * m, t, max(k - m, 2 * t - k - 2)) - 1
    found = search(n, k, t, m, min(m, k + 1 - t), kind="partial", max_colluders=tolerated)
    assert found is not None and len(found.colluders) <= tolerated == 3
    isolated = found.unmasked[0]
    nb = [(isolated + d) % n for d in (-3, -2, -1, 1, 2, 3)]
    withheld = [j for j in nb if not found.values.get(f"u{isolated},{j}")]
    assert 0 < len(withheld) <= min(m, k + 1 - t)


def test_the_exact_search_finds_no_cut_within_colluders_tolerated_at_k_4() -> None:
    """n = 14, k = 4, t = 4, m = ℓ = 1, as built: no cut of any shape with 2 colluders.

    Here ``colluders_tolerated`` = 2 = k - m - ℓ, below the isolation's
    k - ℓ - (m - 1) = 3, and the search proves that no cut (a partial sum
    leaving out a site every releasing site lists as surviving) exists with
    2 colluders, whatever lists, dropouts and withheld share senders the
    server picks; with 3 it finds one.
    """
    from neighbourhood_search import search

    n, k, t, m = 14, 4, 4, 1
    assert search(n, k, t, m, 1, kind="cut", max_colluders=2) is None
    found = search(n, k, t, m, 1, kind="cut", max_colluders=3)
    assert found is not None and len(found.colluders) == 3
