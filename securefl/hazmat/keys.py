"""X25519 key agreement and HKDF-SHA256 key derivation for pairwise secrets.

.. warning::

   This is hazmat: easy-to-misuse primitives. A wrong ``info``, a reused key
   or a skipped check silently breaks secure aggregation. Protocol code should
   use the safe API in :mod:`securefl.secagg`, which builds ``info`` with
   :func:`kdf_info` and never reuses a derived key.

What it is for: in SecAgg+ every pair of sites (u, v) agrees on a shared
secret from their X25519 key adverts; HKDF turns it into independent keys for
independent purposes (the pairwise mask seed, the key that encrypts Shamir
shares) by varying ``info``. ``info`` binds the federation, the round, the
purpose and the *sorted* pair, so both ends derive the same key and no key
ever serves two rounds, two pairs or two purposes.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from securefl.errors import ConfigError, IntegrityError
from securefl.hazmat._encoding import encode_fields
from securefl.hazmat._secret import RawPrivateKey

__all__ = [
    "KDF_INFO_CONTEXT",
    "KEY_LEN",
    "KeyPair",
    "derive_key",
    "kdf_info",
    "load_public",
]

KEY_LEN = 32
"""Length in bytes of X25519 public and private keys."""

KDF_INFO_CONTEXT = b"securefl/kdf/v1"
"""Context constant opening every :func:`kdf_info` string (bumped on any format change)."""

_MIN_DERIVED = 16
_MAX_DERIVED = 255 * 32  # RFC 5869 limit for SHA-256
_ZERO = bytes(KEY_LEN)


class KeyPair(RawPrivateKey[X25519PrivateKey]):
    """An X25519 private key with its public half. Refuses pickling and copying.

    :meth:`generate` draws a fresh key; :meth:`from_private_bytes` rebuilds one
    from its 32 raw private bytes (e.g. reconstructed from Shamir shares), and
    :meth:`export_private` gives them back only with the explicit flag.
    """

    __slots__ = ()

    _key_type = X25519PrivateKey
    _algorithm = "X25519"
    _private_len = KEY_LEN

    @property
    def private_key(self) -> X25519PrivateKey:
        """The wrapped pyca key object (still not picklable)."""
        return self._private

    def derive(self, peer_public_bytes: bytes, *, info: bytes, length: int = 32) -> bytes:
        """Shorthand for :func:`derive_key` with this key pair."""
        return derive_key(self, peer_public_bytes, info=info, length=length)


def load_public(data: bytes) -> X25519PublicKey:
    """Parse a peer's 32-byte public key; anything else raises :class:`IntegrityError`.

    A malformed key comes from a peer (or a forger), so it fails like any other
    authentication failure: opaquely.
    """
    if not isinstance(data, bytes) or len(data) != KEY_LEN:
        raise IntegrityError("invalid public key")
    try:
        return X25519PublicKey.from_public_bytes(data)
    except ValueError:
        raise IntegrityError("invalid public key") from None


def _hkdf(secret: bytes, *, info: bytes, length: int) -> bytes:
    # No salt (RFC 5869 then uses a block of zeros): the X25519 output is
    # already a uniformly hard-to-guess value and ``info`` carries the context.
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def derive_key(
    private: KeyPair | X25519PrivateKey,
    peer_public_bytes: bytes,
    *,
    info: bytes,
    length: int = 32,
) -> bytes:
    """X25519 with the peer's public key, then HKDF-SHA256 with ``info``.

    Refuses (``IntegrityError``, opaque) a peer key of the wrong length and a
    low-order peer key, whose shared secret is all zeros: such a key would let
    a malicious peer or server force a known mask seed on an honest site.
    ``info`` must come from :func:`kdf_info`.
    """
    if isinstance(private, KeyPair):
        private = private.private_key
    if not isinstance(private, X25519PrivateKey):
        raise ConfigError("private must be a KeyPair or X25519PrivateKey")
    if not isinstance(info, bytes) or not info:
        raise ConfigError("info must be non-empty bytes (build it with kdf_info)")
    if isinstance(length, bool) or not isinstance(length, int):
        raise ConfigError("length must be an int")
    if not _MIN_DERIVED <= length <= _MAX_DERIVED:
        raise ConfigError(f"length must be in [{_MIN_DERIVED}, {_MAX_DERIVED}]")
    peer = load_public(peer_public_bytes)
    try:
        shared = private.exchange(peer)
    except ValueError:
        # OpenSSL refuses low-order points itself; keep the failure opaque.
        raise IntegrityError("key agreement failed") from None
    if hmac.compare_digest(shared, _ZERO):  # belt and braces if a backend does not refuse
        raise IntegrityError("key agreement failed")
    return _hkdf(shared, info=info, length=length)


def kdf_info(purpose: str, round_id: int, a: str, b: str, federation: str) -> bytes:
    """Domain-separated HKDF ``info`` for one purpose, round and unordered pair.

    The pair is sorted, so u deriving with v and v deriving with u get the
    same bytes; every field is length-prefixed (see ``_encoding``), so no two
    distinct argument tuples give the same ``info``.
    """
    for name, value in (("purpose", purpose), ("a", a), ("b", b), ("federation", federation)):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a non-empty str")
    if isinstance(round_id, bool) or not isinstance(round_id, int) or round_id < 0:
        raise ConfigError("round_id must be a non-negative int")
    if a == b:
        raise ConfigError("a pairwise key needs two distinct parties")
    lo, hi = sorted((a, b))
    return encode_fields(KDF_INFO_CONTEXT, purpose, federation, round_id, lo, hi)
