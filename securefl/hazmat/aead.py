"""AES-256-GCM for Shamir shares and other small secrets sent through the server.

.. warning::

   This is hazmat: easy-to-misuse primitives. Associated data that does not
   name the round, sender, receiver and stage lets a server replay or reroute
   ciphertexts. Protocol code should use the safe API in
   :mod:`securefl.secagg`, which always builds it with :func:`share_ad`.

Format: ``nonce (12 random bytes) || ciphertext || tag (16 bytes)``. Random
96-bit nonces are safe here because each pairwise key (from
:func:`securefl.hazmat.keys.derive_key`) encrypts a handful of messages, far
below the 2**32 messages-per-key bound for random GCM nonces.

Every failure of :func:`open_` raises one opaque :class:`IntegrityError`
``from None``: whether the tag, the length or the key was wrong is nothing a
peer needs to learn.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from securefl.errors import ConfigError, IntegrityError
from securefl.hazmat._encoding import encode_fields

__all__ = [
    "AEAD_KEY_LEN",
    "NONCE_LEN",
    "SHARE_AD_CONTEXT",
    "TAG_LEN",
    "open_",
    "seal",
    "share_ad",
]

AEAD_KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
SHARE_AD_CONTEXT = b"securefl/share-ad/v1"
"""Context constant opening every :func:`share_ad` string."""


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != AEAD_KEY_LEN:
        raise ConfigError(f"an AES-256-GCM key is {AEAD_KEY_LEN} bytes")


def _seal_from_parts(key: bytes, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """:func:`seal` with a caller-chosen nonce. Known-answer tests only: never reuse a nonce."""
    _check_key(key)
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_LEN:
        raise ConfigError(f"a GCM nonce is {NONCE_LEN} bytes")
    if not isinstance(plaintext, bytes) or not isinstance(ad, bytes):
        raise ConfigError("plaintext and associated data must be bytes")
    return nonce + AESGCM(key).encrypt(nonce, plaintext, ad)


def seal(key: bytes, plaintext: bytes, *, associated_data: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext`` under a fresh random nonce.

    ``associated_data`` is authenticated, not encrypted; build it with
    :func:`share_ad` so the ciphertext only opens for that round, sender,
    receiver and stage.
    """
    return _seal_from_parts(key, os.urandom(NONCE_LEN), plaintext, associated_data)


def open_(key: bytes, ciphertext: bytes, *, associated_data: bytes) -> bytes:
    """Decrypt and verify; any problem at all raises :class:`IntegrityError` from None."""
    try:
        _check_key(key)
        if not isinstance(ciphertext, bytes) or len(ciphertext) < NONCE_LEN + TAG_LEN:
            raise ValueError
        if not isinstance(associated_data, bytes):
            raise ValueError
        nonce, body = ciphertext[:NONCE_LEN], ciphertext[NONCE_LEN:]
        return AESGCM(key).decrypt(nonce, body, associated_data)
    except (InvalidTag, ValueError, TypeError):
        raise IntegrityError("ciphertext did not verify") from None


def share_ad(federation: str, round_id: int, sender: str, receiver: str, stage: str) -> bytes:
    """Associated data binding a ciphertext to its federation, round, direction and stage.

    Unlike :func:`securefl.hazmat.keys.kdf_info` the pair is *not* sorted: a
    share from u to v must not open as a share from v to u.
    """
    for name, value in (
        ("federation", federation),
        ("sender", sender),
        ("receiver", receiver),
        ("stage", stage),
    ):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a non-empty str")
    if isinstance(round_id, bool) or not isinstance(round_id, int) or round_id < 0:
        raise ConfigError("round_id must be a non-negative int")
    return encode_fields(SHARE_AD_CONTEXT, federation, round_id, sender, receiver, stage)
