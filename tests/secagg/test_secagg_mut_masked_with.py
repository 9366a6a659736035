"""Signed masked-with claims against a cheating server: cases the mutation run of
``secagg/_masked_with.py`` asked for.

The first test plays the server over real sites, as
``test_secagg_masked_with.py`` does, with v told that only one neighbour
did not share: every holder of v must refuse, and the refusal names that
neighbour. The second pins what a claim's signature covers (its own domain,
the federation, round, run, round start, the site and the bitmap), so a
claim can never be read as another message, nor moved to another round,
run, federation or site. See ``docs/mutation.md`` ("secagg/_masked_with.py").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from secagg_driver import site_names
from test_secagg_masked_with import RING, _ask, _far_site_releases, _real_claims, _refused, _round
from test_secagg_neighbourhood_quorum import MAX_W, D, _ring

from securefl.aggregation.base import RoundContext
from securefl.errors import AbortError, IntegrityError
from securefl.hazmat.sign import SigningKey, signed_message, verify
from securefl.secagg import MaskConfig
from securefl.secagg import _messages as m
from securefl.secagg._masked_with import check_peer_claims, claim_masked_with, peers_masked_with


def test_a_claim_that_omits_one_listed_neighbour_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v = position 0 is told only 14 did not share; the list names everyone.

    v masks without 14 and refuses the list (15 signers still reach the
    quorum of 14). Every holder of v, 14 and those v masked with, is sent
    v's real claim, which leaves out 14 alone: each refuses to release and
    names 14 as the neighbour v did not mask with. A site holding no share of
    v releases.
    """
    fed, plan = _ring(tmp_path, monkeypatch, *RING)
    ctx = fed.ctx(1, D, MAX_W)
    at = list(plan.order)
    victim, left_out = at[0], at[14]
    srv = _round(fed, ctx, {victim: {left_out}})
    everyone = list(fed.names)
    srv.sign(dict.fromkeys(everyone, everyone))
    assert set(srv.aborted) == {victim} and len(srv.sigs) == 15 >= plan.quorum
    masked = peers_masked_with(
        plan, ctx, victim, srv.claims[victim], fed.roster[victim], ctx.round_digest
    )
    assert masked == plan.neighbours(victim) - {left_out}
    for holder in sorted(plan.neighbours(victim)):
        _refused(srv, holder, _ask(srv, holder, _real_claims(srv, holder)))
        assert str(srv.aborted[holder]) == (
            f"{victim!r} did not mask with {left_out!r}, which the survivor list names"
        )
    assert srv._secret(victim, "b") is None
    _far_site_releases(srv)


_LOCAL = MaskConfig(
    clip=1.0, complete_graph_max=3, dropout_rate=0.05, corrupt_rate=0.0, neighbourhood=True
)
_NAMES = site_names(30)
_PLAN = _LOCAL.plan(federation="fed", round_id=1, cohort=_NAMES)
_CTX = RoundContext(
    federation="fed",
    round=1,
    cohort=_NAMES,
    dimension=D,
    max_weight=MAX_W,
    round_digest=b"d" * 32,
    run="run-a",
)


def test_a_claim_signs_its_domain_round_run_round_start_site_and_bitmap() -> None:
    """The claim is the bitmap over the site's sorted neighbours, then a signature over
    exactly ``("securefl/mask/masked-with/v1", federation, round, run, round start, site,
    bitmap)``; the same signature over any one field changed does not verify, and a claim
    made under another federation is refused by ``peers_masked_with``."""
    site, key = _NAMES[0], SigningKey.generate()
    order = tuple(sorted(_PLAN.neighbours(site)))
    peers = set(order[::2])
    claim = claim_masked_with(_PLAN, _CTX, site, peers, key)
    bitmap = m.pack_members(order, sorted(peers))
    assert claim[: len(bitmap)] == bitmap
    signature = claim[len(bitmap) :]
    fields: list[bytes | str | int] = [
        _CTX.federation,
        _CTX.round,
        _CTX.run,
        _CTX.round_digest,
        site,
        bitmap,
    ]
    public = key.public_bytes()
    verify(public, signed_message("securefl/mask/masked-with/v1", *fields), signature)
    others: list[bytes | str | int] = [
        "fed-2",
        2,
        "run-b",
        b"e" * 32,
        _NAMES[1],
        bytes(len(bitmap)),
    ]
    for i, other in enumerate(others):
        changed = [*fields[:i], other, *fields[i + 1 :]]
        with pytest.raises(IntegrityError):
            verify(public, signed_message("securefl/mask/masked-with/v1", *changed), signature)
    with pytest.raises(IntegrityError):
        verify(public, signed_message("securefl/mask/masked-with/v2", *fields), signature)
    elsewhere = dataclasses.replace(_CTX, federation="fed-2")
    moved = claim_masked_with(_PLAN, elsewhere, site, peers, key)
    with pytest.raises(IntegrityError):
        peers_masked_with(_PLAN, _CTX, site, moved, public, _CTX.round_digest)
    assert peers_masked_with(_PLAN, _CTX, site, claim, public, _CTX.round_digest) == peers


@pytest.mark.parametrize("claim", [None, 0, 3.5, bytearray(67), "x" * 67, [0] * 67])
def test_a_claim_that_is_not_bytes_is_refused_by_the_holder_not_crashed_on(claim: object) -> None:
    """The wire lets only bytes through, but the holder's check must not rely on it: a claim
    of any other type (with or without a length, even the right one) is an ``AbortError``
    of the check, the holder's refusal, never a ``TypeError`` from inside it."""
    site = _NAMES[0]
    keys = {s: SigningKey.generate() for s in _NAMES}
    roster = {s: k.public_bytes() for s, k in keys.items()}
    order = sorted(_PLAN.neighbours(site))
    assert -(-len(order) // 8) + 64 == 67
    good = claim_masked_with(_PLAN, _CTX, site, order, keys[site])
    check_peer_claims(_PLAN, _CTX, roster, _NAMES, {site}, {site: good})
    with pytest.raises(AbortError, match="not signed by it"):
        check_peer_claims(_PLAN, _CTX, roster, _NAMES, {site}, {site: claim})  # type: ignore[dict-item]
