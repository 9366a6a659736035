"""The neighbourhood round's BLS aggregate, attacked by a cheating server and a rogue site.

A site of the neighbourhood round releases shares only when the unmask
request carries a signer bitmap of n - m survivors (t of them its holders)
and one BLS aggregate that verifies, over the list it signed, against the
sum of those signers' roster keys (``securefl.secagg._multisig``). Each test
plays the server (``secagg_adversary.CheatingServer`` over real
:class:`~securefl.secagg.MaskSite` objects, or the honest server with a
tampered message) and checks the site refuses and releases nothing: an
aggregate over another list, a non-survivor in the bitmap, too few signers,
bits past the cohort, a signer whose signature is not in the aggregate, and
a colluding site whose roster key cancels the others' (the rogue-key
attack, stopped by the proof of possession). The server's side: a site
sending a bad consistency signature is dropped and the round completes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import blspy
import numpy as np
import pytest
from secagg_adversary import CheatingServer
from secagg_driver import Federation, Run, edit_payload, plaintext, random_updates, run_round

from securefl.errors import ConfigError
from securefl.hazmat import bls
from securefl.secagg import MaskConfig, MaskPlan, MaskSite, _multisig
from securefl.secagg import _messages as m
from securefl.wire import Envelope

D = 4
MAX_W = 100.0
LOCAL = MaskConfig(
    clip=1.0, complete_graph_max=3, dropout_rate=0.05, corrupt_rate=0.0, neighbourhood=True
)
"""n = 30: k = 18, t = 10, m = ℓ = 1, quorum n - m = 29."""
WIDER = MaskConfig(
    clip=1.0, complete_graph_max=3, dropout_rate=0.1, corrupt_rate=0.0, neighbourhood=True
)
"""n = 40: k = 28, t = 15, m = ℓ = 4, quorum 36."""


def _fed(tmp: Path, n: int = 30, config: MaskConfig = LOCAL) -> tuple[Federation, MaskPlan]:
    fed = Federation(tmp, n, config)
    plan = config.plan(federation=fed.federation, round_id=1, cohort=fed.names)
    assert plan.local and not plan.complete
    return fed, plan


def _signed(fed: Federation, lists: dict[str, list[str]]) -> CheatingServer:
    """A round run honestly up to the masked inputs; then each site in ``lists`` signs its list."""
    ctx = fed.ctx(1, D, MAX_W)
    srv = CheatingServer(fed, ctx, fed.sites(ctx))
    srv.advertise(random_updates(fed.names, D), MAX_W)
    plan = srv.plan
    srv.share({s: sorted(plan.holders(s)) for s in fed.names})
    srv.mask({s: sorted(plan.holders(s)) for s in fed.names})
    srv.sign(lists)
    return srv


def _refused(srv: CheatingServer, target: str, match: str) -> None:
    assert target not in srv.released, "the site released shares"
    assert target in srv.aborted, "the site did not refuse"
    assert match in str(srv.aborted[target]), srv.aborted[target]


# -- what the server sends ------------------------------------------------------


def test_an_aggregate_over_another_survivor_list_is_refused(tmp_path: Path) -> None:
    """The target signed "x dropped" (x its neighbour), the others "everyone survived".

    The server sends the target the 28 others' signatures over their list
    and the target's own, aggregated, as if all 29 signed the target's list:
    with it the target would release x's masking-key share while the others
    release x's self-mask shares.
    """
    fed, plan = _fed(tmp_path)
    target = plan.order[0]
    x = plan.order[1]
    everyone = list(fed.names)
    without = sorted(set(everyone) - {x})
    lists = {s: everyone for s in everyone if s != x}
    lists[target] = without
    srv = _signed(fed, lists)
    assert set(srv.sigs) == set(lists)
    fields = srv.unmask_fields(srv.sigs)  # 29 signers: everyone but x
    srv.send_unmask(target, survivors=without, dropped=[x], **fields)
    _refused(srv, target, "do not all sign this survivor list")


def test_a_signer_bitmap_naming_a_non_survivor_is_refused(tmp_path: Path) -> None:
    """One listed site was never asked to sign; a colluder left off the list fills the quorum.

    The list misses the colluder x (within m = 1); y, listed, never signed.
    28 survivors signed it, and x signs it too: 29 = n - m only if x counts.
    """
    fed, plan = _fed(tmp_path)
    target, x, y = plan.order[0], plan.order[15], plan.order[3]
    listed = sorted(set(fed.names) - {x})
    srv = _signed(fed, {s: listed for s in listed if s != y})
    sigs = {**srv.sigs, x: srv.sign_as(x, listed)}
    assert len(sigs) == plan.quorum
    srv.send_unmask(target, survivors=listed, dropped=[], **srv.unmask_fields(sigs))
    _refused(srv, target, f"consistency signature from {x!r}, not a survivor")


def test_an_aggregate_of_fewer_than_n_minus_m_signers_is_refused(tmp_path: Path) -> None:
    """Every site signed the one list; the server sends the target 28 of the 30 (quorum 29).

    All of the target's holders are among them, so t is met; only the
    cohort-wide count is not.
    """
    fed, plan = _fed(tmp_path)
    target = plan.order[0]
    everyone = list(fed.names)
    srv = _signed(fed, dict.fromkeys(everyone, everyone))
    far = [s for s in plan.order if s not in plan.holders(target)][:2]
    sigs = {u: sig for u, sig in srv.sigs.items() if u not in far}
    assert len(sigs) == plan.quorum - 1 and plan.holders(target) <= set(sigs)
    srv.send_unmask(target, survivors=everyone, dropped=[], **srv.unmask_fields(sigs))
    _refused(srv, target, "the round needs 29 from the cohort")


def test_a_signer_bitmap_with_bits_past_the_cohort_is_refused(tmp_path: Path) -> None:
    """A valid aggregate of all 30, with the bitmap's two spare bits set (or a byte added)."""
    fed, plan = _fed(tmp_path)
    target, other = plan.order[0], plan.order[1]
    everyone = list(fed.names)
    srv = _signed(fed, dict.fromkeys(everyone, everyone))
    fields = srv.unmask_fields(srv.sigs)
    assert len(fields["signers"]) == 4  # 30 bits in 4 bytes
    past = bytes([*fields["signers"][:3], fields["signers"][3] | 0xC0])
    srv.send_unmask(target, survivors=everyone, dropped=[], signers=past, **_agg(fields))
    _refused(srv, target, "the signer list is malformed")
    longer = fields["signers"] + b"\x00"
    srv.send_unmask(other, survivors=everyone, dropped=[], signers=longer, **_agg(fields))
    _refused(srv, other, "invalid")


def _agg(fields: dict[str, Any]) -> dict[str, Any]:
    return {"aggregate": fields["aggregate"]}


def test_a_claimed_signer_whose_signature_is_not_in_the_aggregate_is_refused(
    tmp_path: Path,
) -> None:
    """Two far sites never signed (29 needed, 28 did); the server names them in the bitmap anyway.

    The aggregate holds the 28 real signatures; the bitmap claims 30.
    """
    fed, plan = _fed(tmp_path)
    target = plan.order[0]
    everyone = list(fed.names)
    far = [s for s in plan.order if s not in plan.holders(target)][:2]
    srv = _signed(fed, {s: everyone for s in everyone if s not in far})
    real = srv.unmask_fields(srv.sigs)
    claimed = m.pack_members(fed.names, everyone)
    srv.send_unmask(target, survivors=everyone, dropped=[], signers=claimed, **_agg(real))
    _refused(srv, target, "do not all sign this survivor list")


# -- the rogue-key attack ----------------------------------------------------------


def _rogue_split(fed: Federation, plan: MaskPlan) -> tuple[CheatingServer, str]:
    """One colluder, r, with roster key x·g - Σ pk of every site but r and the victim v.

    The sum of the roster keys of those 28 sites and r is then x·g, so r
    alone signs "all 29 signed" over any list. The split view of
    ``test_secagg_neighbourhood.py`` follows: the 15 sites after v shown
    "v dropped", the others "everyone", each sent a forged aggregate over
    its own list. Raises :class:`ConfigError` when the roster is refused.
    """
    order = list(plan.order)
    victim, rogue = order[0], order[-1]
    ctx = fed.ctx(1, D, MAX_W)
    rogue_half = fed.site_mode(rogue).site(ctx, rogue)  # the colluder's own code, its real key
    assert isinstance(rogue_half, MaskSite)
    others = [s for s in fed.names if s not in (victim, rogue)]
    total = blspy.G1Element.from_bytes(fed.bls_roster[others[0]][0])
    for s in others[1:]:
        total = total + blspy.G1Element.from_bytes(fed.bls_roster[s][0])
    x = blspy.PopSchemeMPL.key_gen(os.urandom(32))
    rogue_key = bytes(x.get_g1() + total.negate())
    fed.bls_roster[rogue] = (rogue_key, fed.bls_roster[rogue][1])  # no proof for this key
    sites: dict[str, MaskSite] = {}
    for s in fed.names:
        half = rogue_half if s == rogue else fed.site_mode(s).site(ctx, s)
        assert isinstance(half, MaskSite)
        sites[s] = half
    srv = CheatingServer(fed, ctx, sites)
    everyone = list(fed.names)
    without = sorted(set(everyone) - {victim})
    dropped_side = set(order[1:16])
    srv.advertise(random_updates(fed.names, D), MAX_W)
    srv.share({s: sorted(plan.holders(s)) for s in everyone})
    srv.mask({s: sorted(plan.holders(s)) for s in everyone})
    srv.steal_from(rogue)
    lists = {s: (without if s in dropped_side else everyone) for s in everyone if s != rogue}
    srv.sign(lists)
    signers = m.pack_members(ctx.cohort, sorted([*others, rogue]))
    for s in plan.holders(victim) - {rogue}:
        own = tuple(lists[s])
        message = srv.list_message(own)
        forged = bytes(blspy.PopSchemeMPL.sign(x, message))
        dropped = [victim] if s in dropped_side else []
        srv.send_unmask(
            s,
            survivors=list(own),
            dropped=dropped,
            signers=signers,
            aggregate=forged,
            **srv.peer_claims(s, own),
        )
    return srv, victim


def test_a_rogue_bls_key_without_proof_of_possession_forges_nothing(tmp_path: Path) -> None:
    """The rogue key has no proof of possession: every site and the server refuse the roster.

    Were it accepted, one colluder's forged aggregates would convince both
    halves of the ring and the server would read the victim's update
    (``test_without_the_possession_check_one_rogue_key_reads_an_update``).
    """
    fed, plan = _fed(tmp_path)
    try:
        srv, victim = _rogue_split(fed, plan)
    except ConfigError as exc:
        assert "no valid proof of possession" in str(exc)
        with pytest.raises(ConfigError, match="no valid proof of possession"):
            _multisig.checked_bls_roster(fed.bls_roster, fed.names)
        with pytest.raises(ConfigError, match="no valid proof of possession"):
            fed.server(fed.ctx(1, D, MAX_W))
        return
    assert not srv.both_secrets(victim), "one rogue key read the victim's update"


def test_without_the_possession_check_one_rogue_key_reads_an_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Must-fail: with proofs of possession not checked, the rogue key signs for everyone.

    Every honest holder of the victim accepts the forged aggregate over its
    own list and releases; the server reads the victim's update with one
    colluder, far below ``colluders_tolerated`` = 9.
    """
    monkeypatch.setattr(_multisig, "_possession_ok", lambda public, proof: True)
    fed, plan = _fed(tmp_path)
    srv, victim = _rogue_split(fed, plan)
    assert plan.colluders_tolerated == 9
    assert not srv.aborted, srv.aborted
    assert srv.both_secrets(victim)


# -- the server's side -------------------------------------------------------------


def _forged(fed: Federation, site: str, forge: str) -> bytes:
    if forge == "garbage":  # 96 bytes that are no point of G2
        return b"\xff" * 96
    if forge == "identity":  # the identity of G2, which signs nothing
        return bytes([0xC0]) + bytes(95)
    if forge == "other message":  # the site's own key, over another list
        return bls.BlsKey.from_identity(fed.keys[site]).sign(b"another list")
    return fed.keys[site].sign(b"survivors")  # Ed25519 where BLS is due


def _bad_signatures(
    fed: Federation, bad: list[str], forge: str, asked: list[str] | None = None
) -> tuple[Run, dict[str, np.ndarray]]:
    """An honest round in which each site of ``bad`` sends a bad consistency signature.

    ``asked`` collects the sites the server sends an unmask request to.
    """

    def tamper(env: Envelope) -> Envelope | None:
        if env.stage == m.UNMASK_REQUEST and asked is not None:
            asked.append(env.receiver)
        if env.stage != m.CONSISTENCY or env.sender not in bad:
            return env
        sig = _forged(fed, env.sender, forge)
        return edit_payload(m.CONSISTENCY, lambda b: b.update(sig=sig), sender=env.sender)(env)

    updates = random_updates(fed.names, D)
    weights = dict.fromkeys(fed.names, 10.0)
    return run_round(fed, fed.ctx(1, D, MAX_W), updates, weights, tamper=tamper), updates


@pytest.mark.parametrize("forge", ["garbage", "identity", "other message", "ed25519"])
def test_a_site_with_a_bad_bls_consistency_signature_is_dropped_and_the_round_completes(
    tmp_path: Path, forge: str
) -> None:
    """n = 40, m = 4: one site signs badly; the server drops it before counting, 39 >= 36 remain.

    The aggregate the others get then verifies, nobody aborts, and the sum is
    exact (the dropped signer's masked input was received: it stays in).
    """
    fed, plan = _fed(tmp_path, 40, WIDER)
    bad = plan.order[5]
    run, updates = _bad_signatures(fed, [bad], forge)
    assert run.result is not None, run.server_abort
    assert bad in run.server.rejected and not run.aborted
    total, weight = plaintext(updates, dict.fromkeys(fed.names, 10.0), run.result.survivors, 1.0)
    bound = len(run.result.survivors) * MAX_W / 2**16
    assert abs(run.result.total_weight - weight) <= bound
    assert run.result.weighted_sum is not None
    assert np.max(np.abs(run.result.weighted_sum - total)) <= bound


def test_more_bad_signatures_than_the_quorum_allows_abort_before_any_share_is_asked(
    tmp_path: Path,
) -> None:
    """m + 1 = 5 sites sign badly: 35 < n - m = 36 valid signers; no unmask request is sent.

    The server aborts on its own count; the sites would refuse too.
    """
    fed, plan = _fed(tmp_path, 40, WIDER)
    bad = list(plan.order[:5])
    asked: list[str] = []
    run, _ = _bad_signatures(fed, bad, "other message", asked)
    assert run.result is None and run.server_abort is not None
    assert set(bad) <= set(run.server.rejected)
    assert not asked, "the server asked for shares"
    assert all(m.UNMASK not in stages for stages in run.sent_by.values())
