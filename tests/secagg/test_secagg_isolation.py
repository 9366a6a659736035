"""One site isolated by withheld share senders: refused by the masked-with check.

``MaskPlan.colluders_tolerated`` counts what cutting the k-regular ring
costs in *sites* (k - m: the graph is k-connected and at most m sites may
be missing). A cheating server can also cut *edges*: it may tell a site v
that up to ℓ of its neighbours did not share (ℓ = ``plan.local_missing`` in
the neighbourhood round; the cohort-wide round lets v's share senders miss m
cohort sites, which at most ℓ = min(m, k + 1 - t) of its holders can be).
v then never masks with them, although they received v's shares and list v
as surviving. v refuses to sign a list naming them, so the list can miss
only m - 1 sites for n - m signers to remain; the other neighbours of v
would then need to collude: k - ℓ - (m - 1) colluders (3 at n = 16, k = 6,
the stated count; 41 against the stated 53 at n = 200 with the defaults).

Each site now signs which neighbours it masked with, and a holder releases
v's b-share only if v's claim names every neighbour of v that the list
names (``securefl.secagg._masked_with``). These tests mount the attack on
the real sites with the real claims forwarded: the holders asked for v's
b-share abort, no update is read; each has a twin with the holders' check
taken out in which the same attack reads the update, so the refusal is the
check's doing. The exact search (``neighbourhood_search``) agrees: with the
check no partial sum exists with ``colluders_tolerated`` colluders at
n = 16, without it the isolation is found.
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
from securefl.secagg import MaskConfig, _site
from securefl.secagg._masked_with import peers_masked_with

Attack = tuple[Colluders, str, dict[str, np.ndarray], dict[str, Any], set[str]]

ISOLATE = (16, (6, 5), 0.13)
"""n = 16, k = 6, t = 5, m = ℓ = 2: ``colluders_tolerated`` = min(12, 5, max(4, 2)) - 1 = 3."""


def _isolate(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Attack:
    """The exact search's breach at n = 16, k = 6, t = 5, m = 2 (3 colluders), on the real sites.

    Ring positions: v = 0; 15, 1 and 3 collude; 2 is claimed dropped (its
    masked input arrives and is ignored). v is told that 13 and 14 did not
    share (ℓ = 2 lets it miss two neighbours), so it masks with 15, 1, 2, 3
    only; 13 and 14 do hold v's shares and mask with v. One list, "all but
    2", is signed by every honest site but v (which refuses a list naming
    13 and 14) and 2, and by the colluders: 11 + 3 = n - m signers. 13 and
    14 release v's self-mask shares (v is listed), 4 and 5 the masking-key
    shares of 2 (listed dropped). With the colluders' shares and masking
    keys every mask of v would be removed: its update alone, with 3
    colluders. Returns the server, v, the updates, the keys the server
    holds and the withheld share senders.
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
    return srv, victim, updates, keys, withheld


def _no_masked_with_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the holders' masked-with check out (for the must-fail twins)."""
    monkeypatch.setattr(_site, "check_peer_claims", lambda *args, **kwargs: None)


def _assert_refused(srv: Colluders, victim: str, withheld: set[str], keys: dict[str, Any]) -> None:
    """The holders asked for v's b-share abort on v's claim; v's b and update stay hidden."""
    plan = srv.plan
    asked_for_b = {h for h in plan.holders(victim) - {victim} if h in srv.sigs}
    assert asked_for_b == withheld  # the honest holders that list v: those it did not mask with
    assert set(srv.aborted) == withheld, sorted(srv.aborted)
    assert not withheld & set(srv.released)  # no share of theirs left
    for h in withheld:  # each refused because v's claim leaves out a neighbour its list names
        assert str(srv.aborted[h]).startswith(f"{victim!r} did not mask with ")
    masked = peers_masked_with(  # v's real claim, forwarded as it signed it
        plan, srv.ctx, victim, srv.claims[victim], srv.fed.roster[victim], srv.ctx.round_digest
    )
    assert masked == plan.neighbours(victim) - withheld
    b_shares = sum(victim in r["b"] for r in srv.released.values()) + sum(
        victim in held for held in srv.held.values()
    )
    assert b_shares < plan.threshold
    assert srv._secret(victim, "b") is None
    assert _arc_sum(srv, [victim], keys) is None


def test_withheld_share_senders_no_longer_isolate_one_site_at_colluders_tolerated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """n = 16, k = 6, t = 5, m = 2: the isolation with 3 = ``colluders_tolerated`` is refused.

    v is told that 13 and 14 did not share and masks without them; they list
    v and are asked for its b-share with v's real claim, which does not name
    them: both abort, v's self mask keeps t - 2 shares short, and the 3
    colluders read nothing.
    """
    srv, victim, _updates, keys, withheld = _isolate(tmp_path, monkeypatch)
    plan = srv.plan
    k, m, ell = plan.k, plan.missing_allowed, plan.local_missing
    assert len(srv.held) == plan.colluders_tolerated == k - ell - (m - 1) == 3
    _assert_refused(srv, victim, withheld, keys)


def test_without_the_masked_with_check_the_isolation_reads_the_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Must-fail twin: with the holders' check a no-op, the same attack reads v's update."""
    _no_masked_with_check(monkeypatch)
    srv, victim, updates, keys, withheld = _isolate(tmp_path, monkeypatch)
    assert not srv.aborted, srv.aborted
    assert withheld <= set(srv.released)
    learned = _arc_sum(srv, [victim], keys)
    assert learned is not None, "the update was not read"
    assert np.allclose(learned[1:], np.clip(updates[victim], -1.0, 1.0), atol=1e-3)


def _verify_each_signature_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 200 sites each check the same 200 adverts (and lists): check each triple once.

    A memo of (key, message, signature) triples that verified: the answer
    for a triple never changes, so every site still refuses what it would
    refuse; it only keeps 40,000 identical Ed25519 checks out of the run.
    The masked-with claims are checked in ``_masked_with``, not memoised.
    """
    verified: set[tuple[bytes, bytes, bytes]] = set()
    real = _site.verify

    def verify(public: bytes, message: bytes, signature: bytes) -> None:
        if (public, message, signature) not in verified:
            real(public, message, signature)
            verified.add((public, message, signature))

    monkeypatch.setattr(_site, "verify", verify)


def _isolate_at_the_defaults(tmp: Path) -> Attack:
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
    return srv, victim, updates, keys, withheld


def test_withheld_share_senders_no_longer_isolate_one_site_at_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cohort-wide round, n = 200, defaults: the 41-colluder isolation (53 stated) is refused.

    The 20 withheld share senders list v and are asked for its b-share with
    v's real claim; each aborts, and 41 colluders' shares are short of t = 54.
    """
    _verify_each_signature_once(monkeypatch)
    srv, victim, _updates, keys, withheld = _isolate_at_the_defaults(tmp_path)
    plan = srv.plan
    k, m, ell = plan.k, plan.missing_allowed, plan.local_missing
    assert plan.colluders_tolerated == 53 and len(srv.held) == k - ell - (m - 1) == 41
    _assert_refused(srv, victim, withheld, keys)


def test_without_the_masked_with_check_41_colluders_read_an_update_at_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Must-fail twin at n = 200: with the holders' check a no-op, 41 colluders read v."""
    _no_masked_with_check(monkeypatch)
    _verify_each_signature_once(monkeypatch)
    srv, victim, updates, keys, withheld = _isolate_at_the_defaults(tmp_path)
    assert not srv.aborted, srv.aborted
    assert withheld <= set(srv.released)
    learned = _arc_sum(srv, [victim], keys)
    assert learned is not None, "the update was not read"
    assert np.allclose(learned[1:], np.clip(updates[victim], -1.0, 1.0), atol=1e-3)


def test_the_exact_search_finds_no_partial_sum_at_colluders_tolerated_with_masked_with() -> None:
    """n = 16, k = 6, t = 5, m = ℓ = 2, the round as built (n - m of the cohort sign one list).

    With the masked-with check (on for the round as built) the search
    proves that no partial sum exists with 3 = ``colluders_tolerated``
    colluders, whatever lists, dropouts and withheld share senders the server
    picks, and finds one with 4. Without the check it finds the isolation
    with 3: a single site whose share senders miss ℓ neighbours.
    """
    from neighbourhood_search import search

    n, k, t, m = 16, 6, 5, 2
    ell = min(m, k + 1 - t)
    tolerated = min(n - 2 * m, t, max(k - m, 2 * t - k - 2)) - 1
    assert tolerated == 3
    assert search(n, k, t, m, ell, kind="partial", max_colluders=tolerated) is None
    above = search(n, k, t, m, ell, kind="partial", max_colluders=tolerated + 1)
    assert above is not None and len(above.colluders) == tolerated + 1
    old = search(
        n, k, t, m, ell, kind="partial", max_colluders=tolerated, rules=frozenset({"masked_with"})
    )
    assert old is not None and len(old.colluders) <= tolerated
    isolated = old.unmasked[0]
    nb = [(isolated + d) % n for d in (-3, -2, -1, 1, 2, 3)]
    withheld = [j for j in nb if not old.values.get(f"u{isolated},{j}")]
    assert 0 < len(withheld) <= ell
    assert any(  # a holder released its b-share though its list names a withheld neighbour
        old.values.get(f"bs{h},{isolated}") and old.values.get(f"L{h},{j}")
        for h in nb
        for j in withheld
    )


def test_the_exact_search_finds_no_cut_within_colluders_tolerated_at_k_4() -> None:
    """n = 14, k = 4, t = 4, m = ℓ = 1, as built: no cut of any shape with 2 colluders.

    Here ``colluders_tolerated`` = 2 = k - m - ℓ, and the search proves that
    no cut (a partial sum leaving out a site every releasing site lists as
    surviving) exists with 2 colluders, whatever lists, dropouts and
    withheld share senders the server picks; with 3 it finds one.
    """
    from neighbourhood_search import search

    n, k, t, m = 14, 4, 4, 1
    assert search(n, k, t, m, 1, kind="cut", max_colluders=2) is None
    found = search(n, k, t, m, 1, kind="cut", max_colluders=3)
    assert found is not None and len(found.colluders) == 3
