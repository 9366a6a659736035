"""The per-round pair secrets are the documented derivation, computed here without securefl's KDF.

``docs/mask.md`` fixes the share key and the pairwise mask seed as
HKDF-SHA256 (no salt) over the X25519 secret of the pair, with ``info`` =
``kdf_info("mask/share-key" | "mask/pair-seed", round, pair, federation)``.
Another implementation of the protocol must derive the same bytes, and the
two purposes must never give the same key, so both are recomputed here from
``cryptography`` directly.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from securefl.aggregation.base import RoundContext
from securefl.hazmat.keys import KeyPair, kdf_info
from securefl.secagg._keys import mask_sign, pair_seed, share_key


def _hkdf(me: KeyPair, peer: KeyPair, info: bytes) -> bytes:
    shared = me.private_key.exchange(X25519PublicKey.from_public_bytes(peer.public_bytes()))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def _ctx() -> RoundContext:
    return RoundContext(
        federation="fed", round=7, cohort=("a", "b", "c"), dimension=4, max_weight=1.0
    )


def test_pair_secrets_follow_the_documented_derivation() -> None:
    ctx, u, v = _ctx(), KeyPair.generate(), KeyPair.generate()
    for purpose, derive in (("mask/share-key", share_key), ("mask/pair-seed", pair_seed)):
        want = _hkdf(u, v, kdf_info(purpose, 7, "a", "b", "fed"))
        assert derive(u, v.public_bytes(), ctx, "a", "b") == want
        assert derive(v, u.public_bytes(), ctx, "b", "a") == want  # both ends agree


def test_the_share_key_and_the_mask_seed_of_a_pair_differ() -> None:
    ctx, u, v = _ctx(), KeyPair.generate(), KeyPair.generate()
    assert share_key(u, v.public_bytes(), ctx, "a", "b") != pair_seed(
        u, v.public_bytes(), ctx, "a", "b"
    )


def test_the_two_ends_of_a_pair_add_opposite_masks() -> None:
    assert mask_sign("a", "b") == 1 and mask_sign("b", "a") == -1
