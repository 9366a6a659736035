"""Attacks that read updates under the neighbourhood round's old check, now refused.

The neighbourhood round used to let a site release shares when all but ℓ
of its *holders* had signed its survivor list, and claimed no colluder
count. Two attacks showed why: at the defaults (n = 200: k = 80, t = 54,
m = ℓ = 20) 2t - k = 28 colluders around a victim and two survivor lists
read its update, and on a small ring (n = 14, k = 4) two colluders with
withheld share senders read a partial sum. The round now needs the
cohort-wide count (n - m = ``plan.quorum`` signers of the same list, t among
the site's holders, proven by one BLS aggregate). Each test below replays
the same attack on the real sites, the server doing its best with the
signatures it can gather, and checks that nothing is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from secagg_adversary import Colluders
from secagg_driver import Federation, random_updates, wide_federation

from securefl.errors import ProtocolError
from securefl.hazmat import prg
from securefl.hazmat.quantize import dequantize_sum
from securefl.secagg import MaskConfig, _config
from securefl.secagg._keys import mask_sign, pair_seed

MAX_W = 100.0
DEFAULTS = MaskConfig(clip=1.0, neighbourhood=True)


_Colluders = Colluders


def _federation(tmp: Path, n: int, config: MaskConfig) -> Federation:
    return wide_federation(tmp, n, config)


def _split_at_defaults(tmp: Path, reach: int) -> tuple[_Colluders, str, dict[str, np.ndarray]]:
    """n = 200 at the defaults; the victim v at ring position 0, 2·reach - 2 colluders.

    Positions -reach+1 .. reach-1 (v excepted) collude. Every site left of v
    (and v) is shown "everyone survived", every site right of v "v dropped";
    each signs what it is shown, the colluders sign both. Sites at -k/2 ..
    -reach release v's self-mask share, sites at reach .. k/2 its masking-key
    share: k/2 + 1 - reach honest shares of each plus the colluders' 2·reach - 2.
    reach = t - k/2 + 1 (15) gives t shares of each secret with 2t - k = 28
    colluders, and each releasing site has all but 11 or 12 <= ℓ = 20 of its
    holders' signatures over its own list (what the old check asked). The
    server sends each releasing site the aggregate of every signature over
    its list in the cohort: about n/2 + 28, not n - m = 180.
    """
    fed = _federation(tmp, 200, DEFAULTS)
    ctx = fed.ctx(1, 4, MAX_W)
    srv = _Colluders(fed, ctx, fed.sites(ctx))
    plan = srv.plan
    assert plan.local and (plan.k, plan.threshold, plan.local_missing) == (80, 54, 20)
    n, half, order = len(plan.order), plan.k // 2, list(plan.order)
    at = {d: order[d % n] for d in range(-n // 2, n // 2)}
    victim = at[0]
    colluders = [at[d] for d in range(-reach + 1, reach) if d != 0]
    everyone = list(fed.names)
    without = sorted(set(everyone) - {victim})
    lists = {at[d]: (everyone if d <= 0 else without) for d in at}
    updates = random_updates(fed.names, 4)
    srv.advertise(updates, MAX_W)
    srv.share({s: sorted(plan.holders(s)) for s in everyone})
    srv.mask({s: sorted(plan.holders(s)) for s in everyone})
    srv.steal(colluders)
    honest = {s: lst for s, lst in lists.items() if s not in colluders}
    srv.sign(honest)
    both = {(c, tuple(lst)): srv.sign_as(c, lst) for c in colluders for lst in (everyone, without)}
    requests = {}
    releasing = [at[d] for d in (*range(-half, -reach + 1), *range(reach, half + 1))]
    for s in releasing:
        own = lists[s]
        sigs = {u: sig for u, sig in srv.sigs.items() if lists[u] == own}
        sigs.update({c: both[c, tuple(own)] for c in colluders})
        dropped = [victim] if own is without and victim in plan.holders(s) else []
        requests[s] = (own, dropped, sigs)
    srv.unmask(requests)
    srv.releasing = releasing
    return srv, victim, updates


def test_the_28_colluder_split_view_at_the_defaults_is_refused(tmp_path: Path) -> None:
    """n = 200, defaults: 28 = 2t - k colluders and two lists no longer read the victim's update.

    The attack that read it under the old check ("all but ℓ of the holders
    signed"): every releasing site now finds fewer than n - m = 180 signers
    of its list in the aggregate and releases nothing. Two lists could both
    gather 180 signers only with n - 2m = 160 sites signing both.
    """
    srv, victim, _ = _split_at_defaults(tmp_path, reach=15)
    plan = srv.plan
    assert len(srv.held) == 2 * plan.threshold - plan.k == 28 < plan.colluders_tolerated
    assert plan.quorum == 180
    assert not srv.both_secrets(victim), "the victim's self mask and masking key were rebuilt"
    assert not srv.released and set(srv.releasing) <= set(srv.aborted)
    assert all("the round needs 180" in str(srv.aborted[s]) for s in srv.releasing)


# -- the exact search on small rings ------------------------------------------------

SMALL = [(14, 4, 4, 1), (16, 6, 5, 2), (18, 6, 6, 2)]
"""(n, k, t, m): rings the search settles in about a second each; ℓ = min(m, k + 1 - t)."""


@pytest.mark.parametrize(("n", "k", "t", "m"), SMALL)
def test_the_old_checks_split_view_at_2t_minus_k_minus_1_is_gone_with_the_quorum(
    n: int, k: int, t: int, m: int
) -> None:
    """The search, as the round was and as it is: 2t - k - 1 colluders split the view then.

    With "all but ℓ of the holders signed" (``signers="local"``) a split view
    takes 2t - k - 1 colluders on each ring; with the cohort-wide count none
    is found with that many (it needs n - 2m: two lists of n - m signers
    share n - 2m, and an honest site signs one list).
    """
    from neighbourhood_search import search

    ell = min(m, k + 1 - t)
    lemma_1 = 2 * t - k - 1
    assert lemma_1 < n - 2 * m
    old = search(n, k, t, m, ell, kind="split", max_colluders=lemma_1, signers="local")
    assert old is not None and len(old.colluders) == lemma_1
    assert search(n, k, t, m, ell, kind="split", max_colluders=lemma_1) is None


def test_the_defaults_stay_on_the_cohort_wide_round() -> None:
    """The neighbourhood round is asked for, never the default."""
    assert MaskConfig(clip=1.0).neighbourhood is False


# -- the withheld-share-sender cut at k = 4 ------------------------------------


def _edge_deletion_cut(
    tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[_Colluders, list[str], dict[str, np.ndarray], dict[str, Any]]:
    """The old search's cheapest partial sum at n = 14, k = 4, t = 4, m = ℓ = 1, on the real sites.

    Positions in the ring order: 1 and 9 collude. S = {10, 11, 12, 13, 0}.
    Site 0 is not told that 2 shared (ℓ = 1 lets it miss one neighbour), so
    it never masks with 2; site 10 likewise never masks with 8. Every other
    honest site signs "everyone but 8" (m = 1); 2, 10, 11, 12, 13 are asked
    to release under it. S's masks would then cancel among themselves and
    with the two colluders, and each S site's self mask would have t shares:
    the sum of 5 of the 12 honest inputs with 2 colluders. Under the old
    check ("all but ℓ of the holders signed") every releasing site passed.
    Now the list needs n - m = 13 signers: the server also asks site 0 (which
    refuses a list naming 2, which never shared with it) and site 8 (which
    refuses a list without itself), and is left with 12, the colluders
    included, in the aggregate it sends.
    """
    monkeypatch.setattr(_config, "regular_parameters", lambda n, g, d: (4, 4))
    config = MaskConfig(
        clip=1.0, complete_graph_max=3, dropout_rate=0.1, corrupt_rate=0.0, neighbourhood=True
    )
    fed = _federation(tmp, 14, config)
    ctx = fed.ctx(1, 4, MAX_W)
    srv = _Colluders(fed, ctx, fed.sites(ctx))
    plan = srv.plan
    assert (plan.k, plan.threshold, plan.missing_allowed, plan.local_missing) == (4, 4, 1, 1)
    at = list(plan.order)
    colluders = [at[1], at[9]]
    arc = [at[i] for i in (10, 11, 12, 13, 0)]
    everyone = list(fed.names)
    listed = sorted(set(everyone) - {at[8]})
    updates = random_updates(fed.names, 4)
    srv.advertise(updates, MAX_W)
    srv.share({s: sorted(plan.holders(s)) for s in everyone})
    keys = {c: srv.sites[c]._s for c in colluders}  # the colluders' memory
    u2 = {s: sorted(plan.holders(s)) for s in everyone}
    u2[at[0]].remove(at[2])
    u2[at[10]].remove(at[8])
    srv.mask(u2)
    srv.steal(colluders)
    signers = [s for s in everyone if s not in colluders]  # 0 and 8 refuse
    srv.sign(dict.fromkeys(signers, listed))
    sigs = dict(srv.sigs)
    for c in colluders:
        sigs[c] = srv.sign_as(c, listed)
    requests = {}
    for s in (at[2], *arc[:4]):
        dropped = sorted(set(u2[s]) - set(listed))
        requests[s] = (listed, dropped, sigs)
    srv.unmask(requests)
    return srv, arc, updates, {"keys": keys, "colluders": colluders}


def _arc_sum(
    srv: _Colluders, arc: list[str], keys: dict[str, Any]
) -> npt.NDArray[np.float64] | None:
    """Σ of the arc's inputs with its self masks and its masks with colluders removed."""
    plan, ctx = srv.plan, srv.ctx
    total = np.zeros(ctx.dimension + 1, dtype=np.uint32)
    masks = []
    for a in arc:
        b = srv._secret(a, "b")
        if b is None or a not in srv.inputs:
            return None
        masks.append((b, -1))
        np.add(total, srv.inputs[a], out=total)
        for c in sorted(plan.neighbours(a) & set(keys)):
            seed = pair_seed(keys[c], srv.adverts[a]["s_pk"], ctx, c, a)
            masks.append((seed, -mask_sign(a, c)))
    prg.add_masks(total, masks, bits=plan.quant.bits)
    try:
        return dequantize_sum(total, plan.quant, summands=len(arc))
    except ProtocolError:
        return None


def test_the_two_colluder_withheld_share_sender_cut_at_k_4_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cut the old search found (2 colluders read 5 of 12 honest inputs) reads nothing now.

    2 colluders is ``colluders_tolerated`` at these parameters. Sites 0 and 8
    refuse to sign, the 12 signatures left fall short of n - m = 13, and
    every site asked to release aborts: no self mask of the arc is rebuilt.
    """
    srv, arc, _, extra = _edge_deletion_cut(tmp_path, monkeypatch)
    plan, at = srv.plan, srv.plan.order
    assert len(extra["colluders"]) == 2 == plan.colluders_tolerated
    assert {at[0], at[8]} <= set(srv.aborted) and len(srv.sigs) == 10  # + 2 colluders
    assert _arc_sum(srv, arc, extra["keys"]) is None, "the arc's sum was read"
    asked = {at[2], *arc[:4]}
    assert not srv.released and asked <= set(srv.aborted)
    assert all("the round needs 13" in str(srv.aborted[s]) for s in asked)


def test_the_search_found_the_k_4_cut_only_under_the_old_check() -> None:
    """n = 14, k = 4, t = 4, m = ℓ = 1: the cut above, as the search finds it with the old check.

    A *cut*: the server unmasks the sum of a set of honest sites that leaves
    out an honest site which shared and which every releasing site lists as
    surviving. With "all but ℓ of the holders signed" 2 colluders suffice;
    with the cohort-wide count the real sites refuse it
    (``test_the_two_colluder_withheld_share_sender_cut_at_k_4_is_refused``).
    """
    from neighbourhood_search import search

    n, k, t, m = 14, 4, 4, 1
    found = search(n, k, t, m, 1, kind="cut", max_colluders=2, signers="local")
    assert found is not None and len(found.colluders) <= 2
    outside = set(range(n)) - set(found.unmasked) - set(found.colluders) - set(found.early)
    alive = [v for v in outside if all(v not in gone for gone in found.releasing.values())]
    assert alive, "the cut leaves out only sites some list drops"
