"""The neighbourhood round's BLS aggregate and masked-with claims, attacked from outside.

Each test plays a cheating server (``secagg_adversary.CheatingServer`` over
real :class:`~securefl.secagg.MaskSite` objects), a colluding site or a
hostile network against the honest halves, and checks what the site or the
server does: signatures replayed from another round, run, federation or
round start; proofs of possession passed off as consistency signatures; the
cohort-wide round's Ed25519 signatures sent to a neighbourhood site and the
other way round; hostile unmask requests and masked inputs (types, sizes,
bitmaps); a colluding site lying about its round start in its advert; and
pickling the BLS secrets. Where the protection is one line of code, a
companion test removes it (monkeypatch) and shows the attack then succeeds.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from secagg_adversary import CheatingServer
from secagg_driver import (
    Federation,
    edit_payload,
    random_updates,
    round_digest,
    run_round,
)

from securefl.aggregation.base import RoundContext
from securefl.errors import AbortError, ConfigError
from securefl.hazmat import bls
from securefl.secagg import MaskConfig, MaskPlan, MaskSite, _multisig
from securefl.secagg import _messages as m
from securefl.wire import pack

D = 4
MAX_W = 100.0
LOCAL = MaskConfig(
    clip=1.0, complete_graph_max=3, dropout_rate=0.05, corrupt_rate=0.0, neighbourhood=True
)
"""n = 20: k = 16, t = 9, m = ℓ = 1, quorum n - m = 19."""
N = 20


def _fed(tmp: Path, config: MaskConfig = LOCAL, n: int = N) -> tuple[Federation, MaskPlan]:
    fed = Federation(tmp, n, config)
    plan = config.plan(federation=fed.federation, round_id=1, cohort=fed.names)
    return fed, plan


def _signed(fed: Federation, ctx: RoundContext | None = None) -> CheatingServer:
    """A round run honestly up to the consistency signatures: every site signed the whole list."""
    ctx = ctx or fed.ctx(1, D, MAX_W)
    srv = CheatingServer(fed, ctx, fed.sites(ctx))
    srv.advertise(random_updates(fed.names, D), MAX_W)
    plan = srv.plan
    srv.share({s: sorted(plan.shown_to(s, list(fed.names))) for s in fed.names})
    srv.mask({s: sorted(plan.shown_to(s, list(fed.names))) for s in fed.names})
    srv.sign({s: list(fed.names) for s in fed.names})
    assert set(srv.sigs) == set(fed.names) and not srv.aborted
    return srv


def _bls_sign_all(fed: Federation, message: bytes) -> dict[str, bytes]:
    """Every site's BLS signature over ``message`` (deterministic: what each signed then)."""
    return {s: bls.BlsKey.from_identity(k).sign(message) for s, k in fed.keys.items()}


# -- replays across rounds, runs, federations and round starts -----------------

_OTHER: dict[str, Callable[[RoundContext], RoundContext]] = {
    "round": lambda c: dataclasses.replace(c, round=c.round + 1),
    "run": lambda c: dataclasses.replace(c, run="another-run"),
    "federation": lambda c: dataclasses.replace(c, federation="another-fed"),
    "round start": lambda c: dataclasses.replace(c, round_digest=round_digest(9, D, MAX_W)),
}


def _replay(fed: Federation, field: str) -> tuple[CheatingServer, str]:
    """Every site's signature over the same survivors, but made in another ``field``."""
    srv = _signed(fed)
    other = _OTHER[field](srv.ctx)
    assert getattr(other, field.replace("round start", "round_digest")) != getattr(
        srv.ctx, field.replace("round start", "round_digest")
    )
    message = m.neighbourhood_list_message(
        other.federation,
        other.round,
        tuple(sorted(fed.names)),
        run=other.run,
        round_digest=other.round_digest,
    )
    sigs = _bls_sign_all(fed, message)
    target = srv.plan.order[0]
    srv.send_unmask(
        target,
        survivors=list(fed.names),
        dropped=[],
        **srv.unmask_fields(sigs),
        **srv.peer_claims(target, fed.names),
    )
    return srv, target


@pytest.mark.parametrize("field", sorted(_OTHER))
def test_bls_signatures_replayed_from_another_round_run_federation_or_start_are_refused(
    tmp_path: Path, field: str
) -> None:
    """The server holds all n signatures over the same survivor list made in another
    round (run, federation, round start) and presents their aggregate as this round's."""
    fed, _ = _fed(tmp_path)
    srv, target = _replay(fed, field)
    assert target not in srv.released, "the site released shares on a replayed aggregate"
    assert "do not all sign this survivor list" in str(srv.aborted[target])


_orig: Callable[..., bytes] = m.neighbourhood_list_message
_DROP_FIELD: dict[str, Callable[..., bytes]] = {
    "round": lambda f, r, s, *, run, round_digest: _orig(
        f, 1, s, run=run, round_digest=round_digest
    ),
    "run": lambda f, r, s, *, run, round_digest: _orig(f, r, s, run="", round_digest=round_digest),
    "federation": lambda f, r, s, *, run, round_digest: _orig(
        "fed", r, s, run=run, round_digest=round_digest
    ),
    "round start": lambda f, r, s, *, run, round_digest: _orig(
        f, r, s, run=run, round_digest=bytes(32)
    ),
}


@pytest.mark.parametrize("field", sorted(_OTHER))
def test_without_that_field_in_the_signed_list_the_replay_is_accepted(
    tmp_path: Path, field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mutation: a list message that does not bind ``field`` lets the replay through."""
    monkeypatch.setattr(m, "neighbourhood_list_message", _DROP_FIELD[field])
    fed, _ = _fed(tmp_path)
    srv, target = _replay(fed, field)
    assert target in srv.released, srv.aborted.get(target)


def test_proofs_of_possession_passed_off_as_consistency_signatures_are_refused(
    tmp_path: Path,
) -> None:
    """Every proof of possession is on the roster, public: their aggregate is a valid G2
    point, but under the proof domain, never under the signing domain."""
    fed, _ = _fed(tmp_path)
    srv = _signed(fed)
    target = srv.plan.order[0]
    proofs = {s: fed.bls_roster[s][1] for s in fed.names}
    srv.send_unmask(
        target,
        survivors=list(fed.names),
        dropped=[],
        **srv.unmask_fields(proofs),
        **srv.peer_claims(target, fed.names),
    )
    assert target not in srv.released
    assert "do not all sign this survivor list" in str(srv.aborted[target])
    # And the other way: a site's consistency signature is no proof of possession.
    some = srv.plan.order[1]
    with pytest.raises(Exception, match="proof of possession"):
        bls.check_possession(fed.bls_roster[some][0], srv.sigs[some])


def test_the_real_aggregate_is_accepted_so_the_refusals_above_are_not_vacuous(
    tmp_path: Path,
) -> None:
    fed, _ = _fed(tmp_path)
    srv = _signed(fed)
    target = srv.plan.order[0]
    srv.send_unmask(
        target,
        survivors=list(fed.names),
        dropped=[],
        **srv.unmask_fields(srv.sigs),
        **srv.peer_claims(target, fed.names),
    )
    assert target in srv.released


def test_the_other_rounds_signature_form_is_refused_in_each_round(tmp_path: Path) -> None:
    """Ed25519 signatures over the cohort-wide message (which every site would sign in a
    cohort-wide round of the same cohort) sent to a neighbourhood site, and a BLS
    aggregate sent to a cohort-wide site: both refuse."""
    fed, _ = _fed(tmp_path)
    srv = _signed(fed)
    target = srv.plan.order[0]
    wide = m.consistency_message(fed.federation, 1, tuple(sorted(fed.names)), run=srv.ctx.run)
    ed = {s: k.sign(wide) for s, k in fed.keys.items()}
    srv.send_unmask(
        target,
        survivors=list(fed.names),
        dropped=[],
        signatures=ed,
        **srv.peer_claims(target, fed.names),
    )
    assert target not in srv.released
    assert "needs the aggregate" in str(srv.aborted[target])

    wide_cfg = dataclasses.replace(LOCAL, neighbourhood=False)
    fed2, _ = _fed(tmp_path / "wide", wide_cfg)
    srv2 = _signed(fed2)
    assert not srv2.plan.local
    target2 = srv2.plan.order[0]
    bls_sigs = _bls_sign_all(fed2, srv2.list_message(fed2.names))
    srv2.send_unmask(
        target2,
        survivors=list(fed2.names),
        dropped=[],
        signers=m.pack_members(fed2.names, list(fed2.names)),
        aggregate=bls.aggregate(list(bls_sigs.values())),
        **srv2.peer_claims(target2, fed2.names),
    )
    assert target2 not in srv2.released
    assert "needs each consistency signature" in str(srv2.aborted[target2])


# -- hostile unmask requests: only AbortError, nothing released ---------------


def _base_request(srv: CheatingServer, fed: Federation, target: str) -> dict[str, Any]:
    """The well-formed unmask request for ``target``: every field as the honest round sends it."""
    everyone = list(fed.names)
    return {
        "v": m.VERSION,
        "survivors": m.pack_members(fed.names, everyone),
        "dropped": [],
        **srv.unmask_fields(srv.sigs),
        **srv.peer_claims(target, everyone),
    }


def _hostile_requests(srv: CheatingServer, fed: Federation, target: str) -> dict[str, Any]:
    """Hostile variants of ``target``'s unmask request, each changing one thing."""
    everyone = list(fed.names)
    base = _base_request(srv, fed, target)
    bitmap, claims, good = base["survivors"], base["peers"], base
    peer, other = sorted(claims)[:2]
    stranger = next(s for s in fed.names if s not in srv.plan.holders(target))
    padded = bytearray(good["signers"])
    assert len(fed.names) % 8, "the bitmap needs bits past the cohort"
    padded[-1] |= 0x80  # the last bit of the last byte: past the cohort
    return {
        "survivors an int": {**base, "survivors": 5},
        "survivors bitmap one byte short": {**base, "survivors": bitmap[:-1]},
        "survivors a map": {**base, "survivors": {"a": 1}},
        "survivors bits past the cohort": {**base, "survivors": bytes(padded)},
        "survivors as ids missing one": {**base, "survivors": everyone[1:]},
        "dropped a string": {**base, "dropped": "site-01"},
        "dropped ints": {**base, "dropped": [1, 2]},
        "dropped names a survivor": {**base, "dropped": [peer]},
        "signers a list": {**base, "signers": everyone},
        "signers bits past the cohort": {**base, "signers": bytes(padded)},
        "aggregate 95 bytes": {**base, "aggregate": good["aggregate"][:95]},
        "aggregate the identity": {**base, "aggregate": bytes([0xC0]) + bytes(95)},
        "aggregate not a point": {**base, "aggregate": os.urandom(96)},
        "aggregate an int": {**base, "aggregate": 7},
        "peers missing": {k: v for k, v in base.items() if k != "peers"},
        "peers a list": {**base, "peers": [claims[peer]]},
        "peers int keys": {**base, "peers": {1: claims[peer]}},
        "peers short claim": {**base, "peers": {**claims, peer: claims[peer][:-1]}},
        "peers swapped claims": {
            **base,
            "peers": {**claims, peer: claims[other], other: claims[peer]},
        },
        "peers a stranger's claim added": {
            **base,
            "peers": {**claims, stranger: srv.claims[stranger]},
        },
        "peers one withheld": {**base, "peers": {p: c for p, c in claims.items() if p != peer}},
        "peers nested": {**base, "peers": {peer: {"x": b"y"}}},
        "both signature forms": {**base, "signatures": {}},
        "version 1": {**base, "v": 1},
        "no version": {k: v for k, v in base.items() if k != "v"},
        "a list": [1, 2, 3],
        "garbage": os.urandom(64),
    }


def test_hostile_unmask_requests_raise_only_abort_and_release_nothing(tmp_path: Path) -> None:
    """Each hostile payload goes to a site of its own, in the signed stage, built from that
    site's own well-formed request with one thing changed; the site must refuse with
    AbortError (anything else propagates and fails the test) and release nothing. The
    last site gets its well-formed request and releases: the variants are not refused
    for something they share."""
    fed, plan = _fed(tmp_path, n=30)
    srv = _signed(fed)
    targets = list(plan.order)
    names = list(_hostile_requests(srv, fed, targets[0]))
    assert len(targets) > len(names)
    for name, site in zip(names, targets, strict=False):
        body = _hostile_requests(srv, fed, site)[name]
        payload = body if isinstance(body, bytes) else pack(body)
        out = srv._ask(site, m.UNMASK_REQUEST, payload)
        assert out == [], name
        assert isinstance(srv.aborted.get(site), AbortError), name
        assert srv.sites[site]._stage == "aborted", name
        assert srv.sites[site]._held == {}, name
    control = targets[-1]
    out = srv._ask(control, m.UNMASK_REQUEST, pack(_base_request(srv, fed, control)))
    assert [e.stage for e in out] == [m.UNMASK], srv.aborted.get(control)


# -- hostile masked inputs at the honest server ---------------------------------

_BAD_INPUTS: dict[str, Callable[[dict[str, Any]], object]] = {
    "claim an int": lambda b: b.update(masked_with=5),
    "claim too short": lambda b: b.update(masked_with=b["masked_with"][:-1]),
    "claim too long": lambda b: b.update(masked_with=b["masked_with"] + b"\0"),
    "claim missing": lambda b: b.pop("masked_with"),
    "claim flipped bit": lambda b: b.update(
        masked_with=bytes([b["masked_with"][0] ^ 1]) + b["masked_with"][1:]
    ),
    "bits a bool": lambda b: b.update(bits=True),
    "n negative": lambda b: b.update(n=-1),
    "y a list": lambda b: b.update(y=[1, 2]),
    "y short": lambda b: b.update(y=b["y"][:-1]),
}


@pytest.mark.parametrize("case", sorted(_BAD_INPUTS))
def test_hostile_masked_inputs_are_dropped_by_the_honest_server(tmp_path: Path, case: str) -> None:
    """A colluding site sends a malformed masked input; the honest server drops it (and
    only it) and the round completes over the others: no exception but a rejection."""
    fed, plan = _fed(tmp_path)
    liar = plan.order[3]
    ctx = fed.ctx(1, D, MAX_W)
    run = run_round(
        fed,
        ctx,
        random_updates(fed.names, D),
        dict.fromkeys(fed.names, 1.0),
        tamper=edit_payload(m.MASKED_INPUT, _BAD_INPUTS[case], sender=liar),
    )
    assert liar in run.server.rejected, run.server.rejected
    assert set(run.server.rejected) == {liar}
    assert run.result is not None and liar not in run.result.survivors
    assert not run.aborted


# -- a colluding site lying about its round start ---------------------------------


def test_a_colluder_advertising_another_round_start_is_dropped_by_the_honest_server(
    tmp_path: Path,
) -> None:
    """Availability: an advert signed for another round-start digest than the one the
    server sent is dropped by the honest server before any site sees it, so the liar's
    honest holders do not abort and the round completes with the other sites (the sum is
    theirs). Without the server's comparison each of its holders would abort ("a site
    given another round start") and the round would fail.

    A colluding site keeps another way to make its holders abort, share ciphertexts
    that do not open (below), which the server cannot check without the pairwise keys.
    """
    fed, plan = _fed(tmp_path)
    liar = plan.order[5]
    ctx = fed.ctx(1, D, MAX_W)
    lying = dataclasses.replace(ctx, round_digest=round_digest(99, D, MAX_W))
    updates = random_updates(fed.names, D)
    run = run_round(fed, ctx, updates, dict.fromkeys(fed.names, 1.0), contexts={liar: lying})
    assert "another round start" in run.server.rejected[liar]
    assert not run.aborted, run.aborted  # no holder of the liar was shown its advert
    assert run.result is not None and liar not in run.result.survivors
    others = {s: u for s, u in updates.items() if s != liar}
    expected = sum(np.clip(u, -1.0, 1.0).astype(np.float64) for u in others.values())
    assert np.allclose(run.result.weighted_sum, expected, atol=1e-2)


def test_a_colluders_garbled_shares_still_abort_its_holders(tmp_path: Path) -> None:
    """What a colluding site can still do alone: share ciphertexts that do not open (the
    server cannot tell, it lacks the pairwise keys) abort its holders; aborting is the
    safe answer (threat_models/mask.md, "Denial of service")."""
    fed, _ = _fed(tmp_path)
    liar = LOCAL.plan(federation=fed.federation, round_id=2, cohort=fed.names).order[5]

    def garble(body: dict[str, Any]) -> None:
        body["shares"] = {h: os.urandom(len(ct)) for h, ct in body["shares"].items()}

    run = run_round(
        fed,
        fed.ctx(2, D, MAX_W),
        random_updates(fed.names, D),
        dict.fromkeys(fed.names, 1.0),
        tamper=edit_payload(m.SHARE, garble, sender=liar),
    )
    victims = LOCAL.plan(federation=fed.federation, round_id=2, cohort=fed.names).neighbours(liar)
    assert liar not in run.server.rejected
    assert victims <= set(run.aborted)
    assert all("did not verify" in str(run.aborted[v]) for v in victims)
    assert run.result is None and run.server_abort is not None


# -- pickling the BLS secrets ---------------------------------------------------


def test_bls_secrets_refuse_pickling_and_deep_copies(tmp_path: Path) -> None:
    fed, plan = _fed(tmp_path)
    site = plan.order[0]
    key = bls.BlsKey.from_identity(fed.keys[site])
    keys = _multisig.checked_bls_roster(fed.bls_roster, fed.names)
    signer = _multisig.NeighbourhoodSigner(fed.keys[site], site, keys)
    ctx = fed.ctx(1, D, MAX_W)
    half = fed.sites(ctx)[site]
    assert isinstance(half, MaskSite)
    for obj in (key, signer, half):
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            with pytest.raises((ConfigError, TypeError)):
                pickle.dumps(obj, protocol=protocol)
        with pytest.raises((ConfigError, TypeError)):
            copy.deepcopy(obj)
    with pytest.raises((ConfigError, TypeError)):
        copy.copy(key)
    assert key.public_bytes().hex() in repr(key)
    secret_repr = repr(signer) + repr(key)
    assert "PrivateKey" not in secret_repr


def test_a_site_refuses_a_roster_whose_bls_key_for_it_is_another(tmp_path: Path) -> None:
    """A roster (or a hostile party handing out one) naming for a site the BLS key of
    another identity: the site refuses to run rather than sign with a key nobody checks."""
    fed, plan = _fed(tmp_path)
    site, other = plan.order[0], plan.order[1]
    swapped = {**fed.bls_roster, site: fed.bls_roster[other], other: fed.bls_roster[site]}
    keys = _multisig.checked_bls_roster(swapped, fed.names)
    with pytest.raises(ConfigError, match="does not match its identity"):
        _multisig.NeighbourhoodSigner(fed.keys[site], site, keys)


def test_a_key_with_the_proof_of_another_key_is_refused(tmp_path: Path) -> None:
    fed, plan = _fed(tmp_path)
    a, b = plan.order[0], plan.order[1]
    mixed = {**fed.bls_roster, a: (fed.bls_roster[a][0], fed.bls_roster[b][1])}
    with pytest.raises(ConfigError, match="proof of possession"):
        _multisig.checked_bls_roster(mixed, fed.names)
    with pytest.raises(ConfigError, match="share one BLS key"):
        _multisig.checked_bls_roster({**fed.bls_roster, a: fed.bls_roster[b]}, fed.names)


def test_bitmaps_sized_for_a_cohort_of_another_size_are_refused(
    tmp_path: Path,
) -> None:
    """Bitmaps sized for another cohort (a site shown a cohort of another size would get
    them): refused at decoding, as an abort, before any check counts signers."""
    fed, plan = _fed(tmp_path)
    srv = _signed(fed)
    target = plan.order[0]
    bigger = (*fed.names, "site-99", "site-98", "site-97", "site-96", "site-95")
    fields = srv.unmask_fields(srv.sigs)
    payload = pack(
        {
            "v": m.VERSION,
            "survivors": m.pack_members(bigger, list(fed.names)),
            "dropped": [],
            "signers": m.pack_members(bigger, sorted(srv.sigs)),
            "aggregate": fields["aggregate"],
            **srv.peer_claims(target, fed.names),
        }
    )
    assert srv._ask(target, m.UNMASK_REQUEST, payload) == []
    assert isinstance(srv.aborted[target], AbortError)
    assert target not in srv.released
    assert "one bit per cohort site" in str(srv.aborted[target])


# -- a colluding site's consistency signature at the honest server -------------

_BAD_SIGNATURES: dict[str, Callable[[Federation, RoundContext, str], bytes]] = {
    "the identity element": lambda fed, ctx, s: bytes([0xC0]) + bytes(95),
    "not a point": lambda fed, ctx, s: bytes([0x80]) + b"\xff" * 95,
    "its proof of possession": lambda fed, ctx, s: fed.bls_roster[s][1],
    "its signature from the next round": lambda fed, ctx, s: bls.BlsKey.from_identity(
        fed.keys[s]
    ).sign(
        m.neighbourhood_list_message(
            ctx.federation,
            ctx.round + 1,
            tuple(sorted(fed.names)),
            run=ctx.run,
            round_digest=ctx.round_digest,
        )
    ),
    "an Ed25519 signature": lambda fed, ctx, s: fed.keys[s].sign(b"anything"),
}


@pytest.mark.parametrize("digest_known", [True, False], ids=["server-digest", "advert-digest"])
@pytest.mark.parametrize("case", sorted(_BAD_SIGNATURES))
def test_a_colluders_bad_consistency_signature_drops_only_the_colluder(
    tmp_path: Path, case: str, digest_known: bool
) -> None:
    """The honest server checks the BLS signatures together and, on failure, alone: only the
    colluder is dropped and the round completes, whether the server's context carries the
    round-start digest or (as in the runtime) it takes the one the adverts sign."""
    fed, plan = _fed(tmp_path)
    liar = plan.order[7]
    ctx = fed.ctx(1, D, MAX_W)
    server_ctx = ctx if digest_known else dataclasses.replace(ctx, round_digest=b"")
    bad = _BAD_SIGNATURES[case](fed, ctx, liar)

    def forge(body: dict[str, Any]) -> None:
        body["sig"] = bad

    run = run_round(
        fed,
        server_ctx,
        random_updates(fed.names, D),
        dict.fromkeys(fed.names, 1.0),
        tamper=edit_payload(m.CONSISTENCY, forge, sender=liar),
        contexts=dict.fromkeys(fed.names, ctx),
    )
    assert set(run.server.rejected) == {liar}, run.server.rejected
    assert not run.aborted, run.aborted
    assert run.result is not None and liar in run.result.survivors  # its input still counts


# -- hostile consistency requests ------------------------------------------------


def test_hostile_consistency_requests_raise_only_abort_and_sign_nothing(tmp_path: Path) -> None:
    """Survivor lists of the wrong type, size or content, each to a site of its own in the
    masked stage: AbortError only, no signature. A last site, sent the honest bitmap, signs."""
    fed, plan = _fed(tmp_path, n=30)
    ctx = fed.ctx(1, D, MAX_W)
    srv = CheatingServer(fed, ctx, fed.sites(ctx))
    srv.advertise(random_updates(fed.names, D), MAX_W)
    srv.share({s: sorted(plan.shown_to(s, list(fed.names))) for s in fed.names})
    srv.mask({s: sorted(plan.shown_to(s, list(fed.names))) for s in fed.names})
    everyone = list(fed.names)
    bitmap = m.pack_members(fed.names, everyone)
    padded = bytearray(bitmap)
    padded[-1] |= 0x80
    targets = list(plan.order)

    def far(site: str, count: int) -> list[str]:
        return [s for s in plan.order if s not in plan.holders(site)][:count]

    def cases(site: str) -> dict[str, Any]:
        return {
            "an int": 5,
            "a map": {"a": b"b"},
            "bitmap one byte short": bitmap[:-1],
            "bitmap one byte long": bitmap + b"\0",
            "bitmap bits past the cohort": bytes(padded),
            "ids with an unknown one": [*everyone[:-1], "mallory"],
            "ids with one twice": [*everyone[:-1], everyone[0]],
            "two missing (m = 1)": m.pack_members(
                fed.names, sorted(set(everyone) - set(far(site, 2)))
            ),
            "the site itself missing": m.pack_members(fed.names, sorted(set(everyone) - {site})),
            "empty": m.pack_members(fed.names, []),
        }

    names = list(cases(targets[0]))
    assert len(targets) > len(names)
    for name, site in zip(names, targets, strict=False):
        payload = pack({"v": m.VERSION, "survivors": cases(site)[name]})
        assert srv._ask(site, m.CONSISTENCY_REQUEST, payload) == [], name
        assert isinstance(srv.aborted.get(site), AbortError), name
        assert srv.sites[site]._stage == "aborted", name
    control = targets[-1]
    out = srv._ask(control, m.CONSISTENCY_REQUEST, pack({"v": m.VERSION, "survivors": bitmap}))
    assert [e.stage for e in out] == [m.CONSISTENCY], srv.aborted.get(control)
