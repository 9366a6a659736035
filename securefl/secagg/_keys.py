"""Per-round key derivation shared by both halves, so they cannot drift apart.

Both ends of a pair derive the same share-encryption key and the same mask
seed from X25519 and HKDF; ``info`` names the purpose, the round, the ordered
pair and the federation, so no key or seed carries over to another round,
pair or federation.
"""

from __future__ import annotations

from securefl.aggregation.base import RoundContext
from securefl.hazmat.keys import KeyPair, kdf_info

__all__ = ["mask_sign", "pair_seed", "share_key"]


def share_key(kp: KeyPair, peer_pk: bytes, ctx: RoundContext, a: str, b: str) -> bytes:
    """AES-256-GCM key for shares between ``a`` and ``b`` this round."""
    return kp.derive(peer_pk, info=kdf_info("mask/share-key", ctx.round, a, b, ctx.federation))


def pair_seed(kp: KeyPair, peer_pk: bytes, ctx: RoundContext, a: str, b: str) -> bytes:
    """Pairwise mask seed between ``a`` and ``b`` this round."""
    return kp.derive(peer_pk, info=kdf_info("mask/pair-seed", ctx.round, a, b, ctx.federation))


def mask_sign(me: str, peer: str) -> int:
    """+1 if ``me`` sorts before ``peer``: the two ends add opposite masks."""
    return 1 if me < peer else -1
