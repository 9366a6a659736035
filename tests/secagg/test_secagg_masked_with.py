"""The signed masked-with claims of the k-regular graph, attacked by a cheating server.

On the k-regular graph each site signs, with its masked input, which
neighbours it masked with (``securefl.secagg._masked_with``); a holder
releases a peer's self-mask share only if the peer's claim names every
neighbour of the peer that the survivor list names, and the honest server
refuses an input whose claim is not exactly the neighbours among the share
senders it showed. Without this, a server that tells a site v that some of
its neighbours did not share isolates v's update with fewer colluders than
stated (tests/secagg/test_secagg_isolation.py).

Each test plays the server over real sites: ``secagg_adversary.CheatingServer``
for what a holder is sent (a forged claim, one of another round or run,
claims withheld or added, a claim that leaves out a listed neighbour), and
``secagg_driver.run_round`` with a tampering network for the honest
server's side. The ring is n = 16, k = 6, t = 5, m = ℓ = 2 (neighbourhood
round), where v = position 0 is told that 13 and 14 did not share.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from secagg_adversary import CheatingServer
from secagg_driver import (
    Federation,
    edit_payload,
    plaintext,
    random_updates,
    run_round,
    site_names,
)
from test_secagg_neighbourhood_quorum import MAX_W, D, _ring

from securefl.aggregation.base import RoundContext
from securefl.errors import IntegrityError
from securefl.hazmat.sign import SigningKey
from securefl.secagg import MaskConfig, MaskPlan
from securefl.secagg import _messages as m
from securefl.secagg._masked_with import claim_masked_with, peers_masked_with
from securefl.wire import Envelope, unpack

RING = (16, (6, 5), 0.13)
"""n = 16, k = 6, t = 5, m = ℓ = 2; quorum n - m = 14."""


def _round(
    fed: Federation,
    ctx: RoundContext,
    withheld: dict[str, set[str]],
) -> CheatingServer:
    """Every site advertises and shares with its holders; ``withheld[v]`` is kept from v's
    share senders (v masks without them, they hold v's shares)."""
    srv = CheatingServer(fed, ctx, fed.sites(ctx))
    plan = srv.plan
    srv.advertise(random_updates(fed.names, D), MAX_W)
    srv.share({s: sorted(plan.holders(s)) for s in fed.names})
    srv.mask({s: sorted(plan.holders(s) - withheld.get(s, set())) for s in fed.names})
    return srv


def _isolated(
    tmp: Path, monkeypatch: pytest.MonkeyPatch, ctx_edit: dict[str, Any] | None = None
) -> tuple[CheatingServer, str, set[str]]:
    """v = position 0 masked without 13 and 14; every other site signed "everyone survived".

    v refuses a list naming 13 and 14 (it got no share from them); 15
    signers are above the quorum of 14, so every holder's check but the
    masked-with one passes.
    """
    fed, plan = _ring(tmp, monkeypatch, *RING)
    ctx = dataclasses.replace(fed.ctx(1, D, MAX_W), **(ctx_edit or {}))
    at = list(plan.order)
    victim, withheld = at[0], {at[13], at[14]}
    srv = _round(fed, ctx, {victim: withheld})
    everyone = list(fed.names)
    srv.sign(dict.fromkeys(everyone, everyone))
    assert set(srv.aborted) == {victim} and len(srv.sigs) == 15 >= plan.quorum
    return srv, victim, withheld


def _ask(srv: CheatingServer, holder: str, peers: dict[str, bytes]) -> dict[str, Any] | None:
    """An unmask request to ``holder`` over "everyone survived" with ``peers`` as the claims."""
    everyone = list(srv.ctx.cohort)
    return srv.send_unmask(
        holder, survivors=everyone, dropped=[], **srv.unmask_fields(srv.sigs), peers=peers
    )


def _real_claims(srv: CheatingServer, holder: str) -> dict[str, bytes]:
    claims: dict[str, bytes] = srv.peer_claims(holder, srv.ctx.cohort)["peers"]
    return claims


def _refused(srv: CheatingServer, holder: str, body: dict[str, Any] | None) -> None:
    assert body is None and holder not in srv.released, "the holder released shares"
    assert holder in srv.aborted, "the holder did not refuse"


def _far_site_releases(srv: CheatingServer) -> None:
    """Control: a site holding no share of v, sent the real claims, releases its b-shares."""
    far = srv.plan.order[8]
    body = _ask(srv, far, _real_claims(srv, far))
    assert body is not None and set(body["b"]) == srv.plan.holders(far), srv.aborted.get(far)


def _full_bitmap(plan: MaskPlan, site: str) -> bytes:
    order = sorted(plan.neighbours(site))
    return m.pack_members(tuple(order), order)


# -- what a holder is sent --------------------------------------------------------


@pytest.mark.parametrize("forgery", ["signed by another site", "bitmap edited after signing"])
def test_a_forged_claim_naming_every_neighbour_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forgery: str
) -> None:
    """The server sends withheld neighbour 14 a claim that v masked with all its neighbours.

    Either signed with a colluding neighbour's key, or v's real claim with the
    bits of 13 and 14 set. 14 aborts and releases nothing; a site holding no
    share of v, sent the real claims, releases (the request is otherwise sound).
    """
    srv, victim, withheld = _isolated(tmp_path, monkeypatch)
    plan, holder = srv.plan, srv.plan.order[14]
    assert holder in withheld
    real = srv.claims[victim]
    if forgery == "signed by another site":
        other = plan.order[1]
        forged = claim_masked_with(
            plan, srv.ctx, victim, plan.neighbours(victim), srv.fed.keys[other]
        )
    else:
        forged = _full_bitmap(plan, victim) + real[len(_full_bitmap(plan, victim)) :]
    assert forged != real
    claims = {**_real_claims(srv, holder), victim: forged}
    _refused(srv, holder, _ask(srv, holder, claims))
    assert str(srv.aborted[holder]) == f"the masked-with claim of {victim!r} is not signed by it"
    _far_site_releases(srv)


@pytest.mark.parametrize("earlier", ["round", "run"])
def test_a_claim_replayed_from_an_earlier_round_or_run_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, earlier: str
) -> None:
    """v really masked with every neighbour in round 1 (or round 1 of an earlier run).

    Its signed claim from then names 13 and 14; now told they did not share,
    v masks without them, and the server forwards the old claim to 14. The
    claim names the round and run (and round start): 14 aborts.
    """
    fed, plan = _ring(tmp_path, monkeypatch, *RING)
    ctx = dataclasses.replace(fed.ctx(1, D, MAX_W), run="run-a")
    before = _round(fed, ctx, {})
    victim = plan.order[0]
    old = before.claims[victim]
    assert peers_masked_with(
        plan, ctx, victim, old, fed.roster[victim], ctx.round_digest
    ) == plan.neighbours(victim)
    now_ctx = fed.ctx(2, D, MAX_W) if earlier == "round" else ctx
    now_ctx = dataclasses.replace(now_ctx, run="run-a" if earlier == "round" else "run-b")
    assert fed.federation == now_ctx.federation
    at = list(plan.order)
    srv = _round(fed, now_ctx, {victim: {at[13], at[14]}})
    everyone = list(fed.names)
    srv.sign(dict.fromkeys(everyone, everyone))
    holder = at[14]
    claims = {**_real_claims(srv, holder), victim: old}
    _refused(srv, holder, _ask(srv, holder, claims))
    assert str(srv.aborted[holder]) == f"the masked-with claim of {victim!r} is not signed by it"
    _far_site_releases(srv)


def test_a_claim_signed_under_another_round_start_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same round and run, another round start (model, settings): v's claim over all its
    neighbours, signed by v's own key as it would under that round start, is refused by 14."""
    srv, victim, _withheld = _isolated(tmp_path, monkeypatch)
    plan, holder = srv.plan, srv.plan.order[14]
    other = dataclasses.replace(srv.ctx, round_digest=bytes(32))
    assert other.round_digest != srv.ctx.round_digest
    elsewhere = claim_masked_with(
        plan, other, victim, plan.neighbours(victim), srv.fed.keys[victim]
    )
    claims = {**_real_claims(srv, holder), victim: elsewhere}
    _refused(srv, holder, _ask(srv, holder, claims))
    assert str(srv.aborted[holder]) == f"the masked-with claim of {victim!r} is not signed by it"
    _far_site_releases(srv)


@pytest.mark.parametrize("change", ["withheld", "added"])
def test_claims_withheld_or_added_in_the_unmask_request_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """Withheld: 14 is sent every claim but v's (the one that would stop it).
    Added: a site holding no share of v is sent its peers' claims and v's besides."""
    srv, victim, _withheld = _isolated(tmp_path, monkeypatch)
    plan = srv.plan
    holder = plan.order[14] if change == "withheld" else plan.order[8]
    claims = _real_claims(srv, holder)
    if change == "withheld":
        assert victim in claims
        del claims[victim]
    else:
        assert victim not in claims
        claims[victim] = srv.claims[victim]
    _refused(srv, holder, _ask(srv, holder, claims))
    assert str(srv.aborted[holder]) == "the server withheld or added masked-with claims"
    if change == "withheld":
        _far_site_releases(srv)


def test_a_claim_that_omits_a_listed_neighbour_is_refused_by_every_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v's real claim leaves out 13 and 14, which the list names: every honest holder of v
    refuses, those v did not mask with (13, 14) and those it did (15, 1, 2, 3)."""
    srv, victim, withheld = _isolated(tmp_path, monkeypatch)
    plan = srv.plan
    masked = peers_masked_with(
        plan, srv.ctx, victim, srv.claims[victim], srv.fed.roster[victim], srv.ctx.round_digest
    )
    assert masked == plan.neighbours(victim) - withheld
    for holder in sorted(plan.neighbours(victim)):
        _refused(srv, holder, _ask(srv, holder, _real_claims(srv, holder)))
        assert str(srv.aborted[holder]).startswith(f"{victim!r} did not mask with ")
    assert srv._secret(victim, "b") is None
    _far_site_releases(srv)


# -- the honest server ----------------------------------------------------------------


def _claim_tamper(fed: Federation, plan: MaskPlan, ctx: RoundContext, bad: str, how: str) -> Any:
    """Rewrite ``bad``'s masked input: a claim it signed over other neighbours, or none."""

    def edit(body: dict[str, Any]) -> None:
        if how == "no claim":
            del body["masked_with"]
            return
        peers = plan.neighbours(bad)  # "more": the dropped neighbour named too
        if how == "fewer":
            peers = peers - {plan.order[1]}
        body["masked_with"] = claim_masked_with(plan, ctx, bad, peers, fed.keys[bad])

    return edit_payload(m.MASKED_INPUT, edit, sender=bad)


@pytest.mark.parametrize("how", ["fewer", "more", "no claim"])
def test_the_honest_server_drops_a_masked_input_whose_claim_differs_from_what_it_showed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Site 0's input comes with a claim (signed by site 0) naming fewer neighbours than the
    share senders shown to it, or one more (neighbour 2 dropped before sharing), or no claim.

    The server drops site 0 before its input touches the total; the round
    completes with the others (within m = 2 missing) and the sum is exact.
    """
    fed, plan = _ring(tmp_path, monkeypatch, *RING)
    ctx = fed.ctx(1, D, MAX_W)
    bad = plan.order[0]
    drop = {plan.order[2]: m.SHARE} if how == "more" else {}
    updates = random_updates(fed.names, D)
    weights = dict.fromkeys(fed.names, 10.0)
    run = run_round(
        fed, ctx, updates, weights, drop=drop, tamper=_claim_tamper(fed, plan, ctx, bad, how)
    )
    assert bad in run.server.rejected, run.server.rejected
    assert run.result is not None, run.server_abort
    assert not run.aborted, run.aborted
    expected = set(fed.names) - {bad} - set(drop)
    assert set(run.result.survivors) == expected
    total, weight = plaintext(updates, weights, run.result.survivors, 1.0)
    bound = len(run.result.survivors) * MAX_W / 2**16
    assert abs(run.result.total_weight - weight) <= bound
    assert run.result.weighted_sum is not None
    assert np.max(np.abs(run.result.weighted_sum - total)) <= bound


def test_on_the_complete_graph_no_claim_is_sent_or_needed(tmp_path: Path) -> None:
    """n = 6, the complete graph: no masked input carries a claim, no unmask request carries
    peers' claims, and the round completes with the exact sum."""
    fed = Federation(tmp_path, 6, MaskConfig(clip=1.0))
    ctx = fed.ctx(1, D, MAX_W)
    plan = fed.config.plan(federation=fed.federation, round_id=1, cohort=fed.names)
    assert plan.complete
    seen: list[Envelope] = []

    def watch(env: Envelope) -> Envelope:
        seen.append(env)
        return env

    updates = random_updates(fed.names, D)
    weights = dict.fromkeys(fed.names, 10.0)
    run = run_round(fed, ctx, updates, weights, tamper=watch)
    assert run.result is not None and not run.aborted
    inputs = [unpack(e.payload) for e in seen if e.stage == m.MASKED_INPUT]
    requests = [unpack(e.payload) for e in seen if e.stage == m.UNMASK_REQUEST]
    assert len(inputs) == len(requests) == 6
    assert not any("masked_with" in body for body in inputs)
    assert not any("peers" in body for body in requests)
    total, _ = plaintext(updates, weights, run.result.survivors, 1.0)
    assert run.result.weighted_sum is not None
    assert np.max(np.abs(run.result.weighted_sum - total)) <= 6 * MAX_W / 2**16


# -- the claim itself ---------------------------------------------------------------

_LOCAL = MaskConfig(
    clip=1.0, complete_graph_max=3, dropout_rate=0.05, corrupt_rate=0.0, neighbourhood=True
)
_NAMES = site_names(30)
_PLAN = _LOCAL.plan(federation="fed", round_id=1, cohort=_NAMES)
_CTX = RoundContext(
    federation="fed", round=1, cohort=_NAMES, dimension=D, max_weight=MAX_W, round_digest=b"d" * 32
)
_SITE = _NAMES[0]
_KEY = SigningKey.generate()
_NEIGHBOURS = sorted(_PLAN.neighbours(_SITE))


@settings(max_examples=40, deadline=None)
@given(
    peers=st.sets(st.sampled_from(_NEIGHBOURS)),
    index=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
)
def test_a_claim_round_trips_and_any_flipped_byte_breaks_it(
    peers: set[str], index: int, flip: int
) -> None:
    """Any subset of the 18 neighbours: the claim reads back as exactly that subset; the
    same claim with any one byte changed (bitmap or signature) is refused."""
    assert not _PLAN.complete and len(_NEIGHBOURS) == 18
    claim = claim_masked_with(_PLAN, _CTX, _SITE, peers, _KEY)
    public = _KEY.public_bytes()
    back = peers_masked_with(_PLAN, _CTX, _SITE, claim, public, _CTX.round_digest)
    assert back == frozenset(peers)
    at = index % len(claim)
    broken = claim[:at] + bytes([claim[at] ^ flip]) + claim[at + 1 :]
    with pytest.raises(IntegrityError):
        peers_masked_with(_PLAN, _CTX, _SITE, broken, public, _CTX.round_digest)
