"""How many colluders the neighbourhood round withstands: the split view and the search.

Lemma 1 (threat_models/mask.md, "The neighbourhood round"): an honest holder
releases at most one share of a site, so rebuilding both secrets of v takes
2t - k - 1 colluding holders of v whatever lists the server shows. These
tests play the split view at the default parameters on the real protocol
(n = 200: k = 80, t = 54, ℓ = 20): at 2t - k colluders the server reads one
site's update although every releasing site passes every neighbourhood
check, at 2t - k - 2 it reads nothing. The neighbourhood round therefore
cannot be claimed to withstand more than 2t - k - 1 colluders, against 53
for the cohort-wide round at n = 200. The exact search
(``neighbourhood_search``) checks Lemma 1 and the local agreement rule on
small rings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from secagg_adversary import CheatingServer
from secagg_driver import Federation, random_updates

from securefl.errors import IntegrityError, ProtocolError
from securefl.hazmat import prg, shamir
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.quantize import dequantize_sum
from securefl.hazmat.sign import SigningKey
from securefl.secagg import MaskConfig, _config
from securefl.secagg import _messages as m
from securefl.secagg._keys import mask_sign, pair_seed

MAX_W = 100.0
DEFAULTS = MaskConfig(clip=1.0, neighbourhood=True)


class _Colluders(CheatingServer):
    """A cheating server with many colluding sites: every share they hold is the server's."""

    held: dict[str, dict[str, tuple[bytes, bytes]]]

    def steal(self, colluders: list[str]) -> None:
        self.held = {c: dict(self.sites[c]._held) for c in colluders}

    def _secret(self, owner: str, kind: str) -> bytes | None:
        plan = self.plan
        shares = {
            plan.share_id(h): resp[kind][owner]
            for h, resp in self.released.items()
            if owner in resp[kind]
        }
        for c, held in self.held.items():
            if owner in held and c != owner:
                s_share, b_share = held[owner]
                shares[plan.share_id(c)] = b_share if kind == "b" else s_share
        if len(shares) < plan.threshold:
            return None
        try:
            secret = shamir.combine(shares, threshold=plan.threshold)
        except (IntegrityError, ProtocolError):
            return None
        adv = self.adverts[owner]
        if kind == "b":
            ok = m.commit_self_seed(self.ctx.federation, self.ctx.round, owner, secret)
            return secret if ok == adv["commit"] else None
        pk = KeyPair.from_private_bytes(secret).public_bytes()
        return secret if pk == adv["s_pk"] else None


def _federation(tmp: Path, n: int, config: MaskConfig) -> Federation:
    fed = Federation(tmp, 3, config)
    fed.n, fed.names = n, tuple(f"site-{i:03d}" for i in range(n))
    fed.keys = {s: SigningKey.generate() for s in fed.names}
    fed.roster = {s: k.public_bytes() for s, k in fed.keys.items()}
    return fed


def _split_at_defaults(tmp: Path, reach: int) -> tuple[_Colluders, str, dict[str, np.ndarray]]:
    """n = 200 at the defaults; the victim v at ring position 0, 2·reach - 2 colluders.

    Positions -reach+1 .. reach-1 (v excepted) collude. Every site left of v
    (and v) is shown "everyone survived", every site right of v "v dropped";
    each signs what it is shown, the colluders sign both. Sites at -k/2 ..
    -reach release v's self-mask share, sites at reach .. k/2 its masking-key
    share: k/2 + 1 - reach honest shares of each plus the colluders' 2·reach - 2.
    Each releasing site has all but 11 or 12 <= ℓ = 20 of its holders' signatures
    over its own list, so every neighbourhood check passes. reach = t - k/2 + 1
    (15) gives t shares of each secret with 2t - k = 28 colluders.
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
    both = {
        (c, tuple(lst)): fed.keys[c].sign(
            m.consistency_message(ctx.federation, ctx.round, tuple(lst), run="")
        )
        for c in colluders
        for lst in (everyone, without)
    }
    requests = {}
    releasing = [at[d] for d in (*range(-half, -reach + 1), *range(reach, half + 1))]
    for s in releasing:
        own = lists[s]
        sigs = {u: srv.sigs[u] for u in plan.holders(s) if u in srv.sigs and lists[u] == own}
        sigs.update({c: both[c, tuple(own)] for c in colluders if c in plan.holders(s)})
        dropped = [victim] if own is without and victim in plan.holders(s) else []
        requests[s] = (own, dropped, sigs)
    srv.unmask(requests)
    return srv, victim, updates


def test_at_the_defaults_2t_minus_k_colluders_read_one_update_in_the_neighbourhood_round(
    tmp_path: Path,
) -> None:
    """n = 200, defaults: 28 = 2t - k colluders and two lists read the victim's update.

    Every releasing site passes every check of the neighbourhood round (its
    holders' signatures over its own list, at most ℓ unsigned): the bound on
    any colluder count claimed for this round is 2t - k - 1 = 27, against
    53 for the cohort-wide round at the same n.
    """
    srv, victim, updates = _split_at_defaults(tmp_path, reach=15)
    plan = srv.plan
    assert len(srv.held) == 2 * plan.threshold - plan.k == 28
    assert not srv.aborted, srv.aborted
    assert srv.both_secrets(victim)
    x = srv.read_update(victim, plan.neighbours(victim))
    assert np.allclose(x[1:], np.clip(updates[victim], -1.0, 1.0), atol=1e-3)


def test_at_the_defaults_2t_minus_k_minus_2_colluders_rebuild_no_second_secret(
    tmp_path: Path,
) -> None:
    """The same split with 26 = 2t - k - 2 colluders: each secret is one share short.

    Lemma 1: b and s of v need t shares each, an honest holder gives one of
    the two, so 2t <= (k + 1 - c) + 2c needs c >= 2t - k - 1 colluding
    holders. With Lemma 1's premise removed (a holder releasing both shares
    of every peer it holds) this split reads the update.
    """
    srv, victim, _ = _split_at_defaults(tmp_path, reach=14)
    assert len(srv.held) == 2 * srv.plan.threshold - srv.plan.k - 2
    assert not srv.aborted
    assert not srv.both_secrets(victim)


# -- the exact search on small rings ------------------------------------------

SMALL = [(14, 4, 4, 1), (16, 6, 5, 2), (18, 6, 6, 2)]
"""(n, k, t, m): rings the search settles in about a second each; ℓ = min(m, k + 1 - t)."""


@pytest.mark.parametrize(("n", "k", "t", "m"), SMALL)
def test_the_search_finds_no_split_view_below_2t_minus_k_minus_1_and_one_at_it(
    n: int, k: int, t: int, m: int
) -> None:
    from neighbourhood_search import search

    ell = min(m, k + 1 - t)
    assert search(n, k, t, m, ell, kind="split", max_colluders=2 * t - k - 2) is None
    found = search(n, k, t, m, ell, kind="split", max_colluders=2 * t - k - 1)
    assert found is not None and len(found.colluders) == 2 * t - k - 1


def test_the_search_needs_the_one_share_per_peer_rule_for_lemma_1() -> None:
    """Must-fail: a holder that may release both shares of a peer breaks Lemma 1."""
    from neighbourhood_search import search

    n, k, t, m = SMALL[1]
    ell = min(m, k + 1 - t)
    rules = frozenset({"both_shares"})
    found = search(n, k, t, m, ell, kind="split", max_colluders=2 * t - k - 2, rules=rules)
    assert found is not None


def test_local_agreement_raises_the_split_view_cost_when_ell_is_small() -> None:
    """n = 16, k = 6, t = 5, m = ℓ = 1: 4 colluders with "all but ℓ signed", 3 without."""
    from neighbourhood_search import search

    n, k, t, m = 16, 6, 5, 1
    assert search(n, k, t, m, 1, kind="split", max_colluders=3) is None
    weaker = frozenset({"local_signers"})
    assert search(n, k, t, m, 1, kind="split", max_colluders=3, rules=weaker) is not None


def test_the_defaults_stay_on_the_cohort_wide_round() -> None:
    """No count is claimed for the neighbourhood round, and it is not the default."""
    assert MaskConfig(clip=1.0).neighbourhood is False
    cohort = tuple(f"site-{i:03d}" for i in range(200))
    plan = DEFAULTS.plan(federation="f", round_id=1, cohort=cohort)
    assert plan.colluders_tolerated == 0


# -- a partial sum below the split-view count -----------------------------------


def _edge_deletion_cut(
    tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[_Colluders, list[str], dict[str, np.ndarray], dict[str, Any]]:
    """The search's cheapest partial sum at n = 14, k = 4, t = 4, m = ℓ = 1, on the real sites.

    Positions in the ring order: 1 and 9 collude. S = {10, 11, 12, 13, 0}.
    Site 0 is not told that 2 shared (ℓ = 1 lets it miss one neighbour), so
    it never masks with 2 and is never asked to sign; site 10 likewise never
    masks with 8. Every other honest site signs "everyone but 8" (m = 1) and
    2, 10, 11, 12, 13 release under it with all but ℓ of their holders'
    signatures. S's masks then cancel among themselves and with the two
    colluders, and each S site's self mask has t shares: the server reads
    the sum of 5 of the 12 honest inputs with 2 colluders, fewer than the
    2t - k - 1 = 3 a split view needs. The cut works because site 0 and 10,
    which dropped a neighbour from their share senders, need not sign the
    list their holders release under (the cohort-wide round's n - m quorum
    counts them; the neighbourhood round's "all but ℓ" lets one go).
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
    signers = [s for s in everyone if s not in (*colluders, at[0], at[8])]
    srv.sign(dict.fromkeys(signers, listed))
    sigs = dict(srv.sigs)
    for c in colluders:
        sigs[c] = fed.keys[c].sign(
            m.consistency_message(ctx.federation, ctx.round, tuple(listed), run="")
        )
    requests = {}
    for s in (at[2], *arc[:4]):
        dropped = sorted(set(u2[s]) - set(listed))
        mine = {u: sig for u, sig in sigs.items() if u in plan.holders(s)}
        requests[s] = (listed, dropped, mine)
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


def test_two_colluders_and_withheld_share_senders_read_a_partial_sum_at_k_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why no count is claimed: a partial sum costs less than the split view on small rings.

    The exact search finds it; replayed on the real sites every check
    passes and the server reads the sum of an arc of 5 of 12 honest sites.
    """
    srv, arc, updates, extra = _edge_deletion_cut(tmp_path, monkeypatch)
    assert not (set(srv.aborted) & set(srv.released)), srv.aborted
    assert set(srv.released) == {srv.plan.order[2], *arc[:4]}
    learned = _arc_sum(srv, arc, extra["keys"])
    want = sum(np.clip(updates[v].astype(np.float64), -1.0, 1.0) for v in arc)
    assert learned is not None and np.allclose(learned[1:], want, atol=1e-3)
    assert len(extra["colluders"]) == 2 < 2 * srv.plan.threshold - srv.plan.k - 1


def test_the_search_finds_a_cut_below_the_split_view_count_at_k_4() -> None:
    """n = 14, k = 4, t = 4, m = ℓ = 1: 2 colluders cut the ring; a split view needs 3.

    A *cut*: the server unmasks the sum of a set of honest sites that leaves
    out an honest site which shared and which every releasing site lists as
    surviving (not a site some list drops). The replay above plays one such
    cut on the real sites.
    """
    from neighbourhood_search import search

    n, k, t, m = 14, 4, 4, 1
    assert search(n, k, t, m, 1, kind="split", max_colluders=2) is None
    found = search(n, k, t, m, 1, kind="cut", max_colluders=2)
    assert found is not None and len(found.colluders) <= 2
    outside = set(range(n)) - set(found.unmasked) - set(found.colluders) - set(found.early)
    alive = [v for v in outside if all(v not in gone for gone in found.releasing.values())]
    assert alive, "the cut leaves out only sites some list drops"
