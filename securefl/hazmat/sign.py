"""Ed25519 signatures for key adverts, the consistency round and privacy records.

.. warning::

   This is hazmat: easy-to-misuse primitives. Signing raw bytes without a
   domain lets a signature made for one message type be replayed as another.
   Protocol code should use the safe APIs in :mod:`securefl.secagg` and
   :mod:`securefl.reports`, which always sign :func:`signed_message` output.

:func:`signed_message` is the only way messages should be built for
signing: a fixed context, a domain string naming the message type and
version, then typed, length-prefixed fields (see ``_encoding``).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from securefl.errors import ConfigError, IntegrityError
from securefl.hazmat._encoding import Field, encode_fields
from securefl.hazmat._secret import RawPrivateKey

__all__ = [
    "PUBLIC_KEY_LEN",
    "SIGNATURE_LEN",
    "SIGNED_MESSAGE_CONTEXT",
    "SigningKey",
    "signed_message",
    "verify",
]

PUBLIC_KEY_LEN = 32
PRIVATE_KEY_LEN = 32
SIGNATURE_LEN = 64
SIGNED_MESSAGE_CONTEXT = b"securefl/signed/v1"
"""Context constant opening every :func:`signed_message` string."""


class SigningKey(RawPrivateKey[Ed25519PrivateKey]):
    """An Ed25519 private key. Refuses pickling and copying.

    :meth:`generate` draws a fresh key; :meth:`from_private_bytes` loads the
    32-byte RFC 8032 seed (e.g. from a provisioning kit), and
    :meth:`export_private` gives it back only with the explicit flag.
    """

    __slots__ = ()

    _key_type = Ed25519PrivateKey
    _algorithm = "Ed25519"
    _private_len = PRIVATE_KEY_LEN

    def sign(self, message: bytes) -> bytes:
        """A 64-byte signature; ``message`` should come from :func:`signed_message`."""
        if not isinstance(message, bytes):
            raise ConfigError("message must be bytes (build it with signed_message)")
        return self._private.sign(message)


def verify(public_bytes: bytes, message: bytes, signature: bytes) -> None:
    """Return if ``signature`` is valid, else raise :class:`IntegrityError` from None.

    Malformed keys and signatures (wrong length, not a curve point) fail the
    same way as a wrong signature.
    """
    try:
        if not isinstance(public_bytes, bytes) or len(public_bytes) != PUBLIC_KEY_LEN:
            raise ValueError
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LEN:
            raise ValueError
        if not isinstance(message, bytes):
            raise ValueError
        Ed25519PublicKey.from_public_bytes(public_bytes).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        raise IntegrityError("signature did not verify") from None


def signed_message(domain: str, *fields: Field) -> bytes:
    """Canonical bytes to sign: context, ``domain``, then typed length-prefixed fields.

    ``domain`` names the message type and version, e.g. ``"secagg/key-advert/v1"``;
    a signature over one domain never verifies as a message of another.
    """
    if not isinstance(domain, str) or not domain:
        raise ConfigError("domain must be a non-empty str")
    return encode_fields(SIGNED_MESSAGE_CONTEXT, domain, *fields)
