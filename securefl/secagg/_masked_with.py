"""Signed "masked with" claims: which neighbours a site really masked with (k-regular graph).

Why: a cheating server may tell a site v that up to its cap of neighbours W
did not share. v then masks without them, while they, having received v's
shares, list v as surviving. v refuses to sign a list naming W, but one site
not signing is within the quorum's slack, so v's holders still release its
self mask b_v, and the masks left in v's input are those with its other
neighbours: with m - 1 of them claimed dropped, the server needs only the
rest as colluders, about k - m - ℓ of them instead of the k - m that
cutting a site off the graph otherwise takes (41 instead of 53 at n = 200).

So each site signs, with its masked input, the set of neighbours it masked
with (a bitmap over its neighbours sorted by name), and a holder releases
a peer's b-share only if that peer's signed set holds every neighbour of the
peer that the survivor list names. The honest server checks each claim
against the share senders it showed the site and refuses any other, so an
honest round never fails this check.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from securefl.aggregation.base import RoundContext
from securefl.errors import AbortError, IntegrityError, ProtocolError, WireError
from securefl.hazmat.sign import SIGNATURE_LEN, SigningKey, signed_message, verify
from securefl.secagg import _messages as m
from securefl.secagg._plan import MaskPlan

__all__ = ["check_peer_claims", "check_shown_claim", "claim_masked_with", "peers_masked_with"]


def _neighbour_order(plan: MaskPlan, site: str) -> tuple[str, ...]:
    return tuple(sorted(plan.neighbours(site)))


def _message(ctx: RoundContext, site: str, bitmap: bytes, round_digest: bytes) -> bytes:
    return signed_message(
        "securefl/mask/masked-with/v1",
        ctx.federation,
        ctx.round,
        ctx.run,
        round_digest,
        site,
        bitmap,
    )


def claim_masked_with(
    plan: MaskPlan, ctx: RoundContext, site: str, peers: Collection[str], key: SigningKey
) -> bytes:
    """``site``'s signed claim (bitmap over its sorted neighbours, then the signature)."""
    bitmap = m.pack_members(_neighbour_order(plan, site), sorted(peers))
    return bitmap + key.sign(_message(ctx, site, bitmap, ctx.round_digest))


def peers_masked_with(
    plan: MaskPlan,
    ctx: RoundContext,
    site: str,
    claim: bytes,
    public_key: bytes,
    round_digest: bytes,
) -> frozenset[str]:
    """The neighbours ``site`` signed it masked with; raises ``IntegrityError`` if forged."""
    order = _neighbour_order(plan, site)
    size = -(-len(order) // 8)
    if not isinstance(claim, bytes) or len(claim) != size + SIGNATURE_LEN:
        raise IntegrityError(f"the masked-with claim of {site!r} has the wrong length")
    bitmap, signature = claim[:size], claim[size:]
    verify(public_key, _message(ctx, site, bitmap, round_digest), signature)
    try:
        return frozenset(m.unpack_members(order, bitmap))
    except WireError as exc:
        raise IntegrityError(f"the masked-with claim of {site!r}: {exc}") from None


def check_shown_claim(
    plan: MaskPlan,
    ctx: RoundContext,
    site: str,
    claim: bytes,
    public_key: bytes,
    round_digest: bytes,
    senders_shown: Collection[str],
) -> None:
    """The honest server's check: the claim is ``site``'s and names exactly the neighbours
    among the share senders it was shown (else its input is refused, before it is summed)."""
    peers = peers_masked_with(plan, ctx, site, claim, public_key, round_digest)
    if peers != plan.neighbours(site) & set(senders_shown):
        raise ProtocolError(
            f"{site!r} claims to have masked with other neighbours than it was shown"
        )


def check_peer_claims(
    plan: MaskPlan,
    ctx: RoundContext,
    roster: Mapping[str, bytes],
    survivors: Collection[str],
    peers: Collection[str],
    claims: Mapping[str, bytes],
) -> None:
    """A holder's check before it releases b-shares of ``peers`` (survivors it holds shares of).

    Each peer's signed claim must name every neighbour of the peer that the
    survivor list names: a peer that did not mask with a listed neighbour
    would otherwise leave its input exposed to fewer colluders.
    """
    if set(claims) != set(peers):
        raise AbortError("the server withheld or added masked-with claims")
    listed = set(survivors)
    for peer in peers:
        try:
            masked = peers_masked_with(
                plan, ctx, peer, claims[peer], roster[peer], ctx.round_digest
            )
        except IntegrityError:
            raise AbortError(f"the masked-with claim of {peer!r} is not signed by it") from None
        unmasked = (plan.neighbours(peer) & listed) - masked
        if unmasked:
            raise AbortError(
                f"{peer!r} did not mask with {sorted(unmasked)[0]!r}, which the survivor list names"
            )
