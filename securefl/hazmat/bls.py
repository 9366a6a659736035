"""BLS multi-signatures (BLS12-381, IETF proof-of-possession scheme) through blspy.

.. warning::

   This is hazmat: easy-to-misuse primitives. A multi-signature over one
   message is only as good as the public keys it is checked against: every
   key must come with a verified proof of possession (:func:`check_possession`),
   or one party could choose its key to cancel the others' and sign for all of
   them (the rogue-key attack). Protocol code should use :mod:`securefl.secagg`.

Why BLS beside Ed25519: the consistency round needs every site to know that
n - m sites of the cohort signed the same survivor list. With Ed25519 that is
n - m verifications per site (about 90 ms at n = 500). With BLS the server
adds the signatures into one 96-byte aggregate and a site checks it with one
pairing equation against the sum of the signers' public keys: about 1.5 ms at
n = 500, of which the key sum is a few hundred additions of about 1 µs.

A site's BLS key is derived from its Ed25519 identity seed with HKDF-SHA256
under its own label (:meth:`BlsKey.from_identity`), so no second long-term
secret has to be stored or provisioned; the public key and its proof of
possession go on the roster beside the identity key. Public keys are 48
bytes (G1, compressed), signatures 96 bytes (G2); blspy rejects encodings
that are not points of the prime-order subgroups, and this module also
refuses the identity element, which would sign nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence

import blspy
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from securefl.errors import ConfigError, IntegrityError
from securefl.hazmat._secret import NoPickle
from securefl.hazmat.sign import SigningKey

__all__ = [
    "BLS_PUBLIC_KEY_LEN",
    "BLS_SIGNATURE_LEN",
    "BlsKey",
    "aggregate",
    "check_possession",
    "verify_aggregate",
    "verify_one",
]

BLS_PUBLIC_KEY_LEN = 48
BLS_SIGNATURE_LEN = 96
_DERIVE_INFO = b"securefl/bls-identity/v1"
_INFINITY_G1 = bytes(blspy.G1Element())
_INFINITY_G2 = bytes(blspy.G2Element())


class BlsKey(NoPickle):
    """A BLS secret key. Refuses pickling and copying, like every securefl secret."""

    __slots__ = ("_public", "_secret")

    def __init__(self, secret: blspy.PrivateKey) -> None:
        self._secret = secret
        self._public = bytes(secret.get_g1())

    @classmethod
    def from_identity(cls, identity: SigningKey) -> BlsKey:
        """The BLS key of the party holding ``identity`` (HKDF of its Ed25519 seed).

        Deterministic, so a restarted site, the provisioning tool and a
        simulation all get the same key without storing a second secret.
        """
        if not isinstance(identity, SigningKey):
            raise ConfigError("a BLS key is derived from a securefl SigningKey")
        seed = identity.export_private(i_understand_this_exports_a_secret=True)
        ikm = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_DERIVE_INFO).derive(seed)
        return cls(blspy.PopSchemeMPL.key_gen(ikm))

    def public_bytes(self) -> bytes:
        """The 48-byte public key (G1, compressed)."""
        return self._public

    def sign(self, message: bytes) -> bytes:
        """A 96-byte signature over ``message`` (build it with ``signed_message``)."""
        if not isinstance(message, bytes):
            raise ConfigError("message must be bytes (build it with signed_message)")
        return bytes(blspy.PopSchemeMPL.sign(self._secret, message))

    def prove_possession(self) -> bytes:
        """The proof of possession of this key (a signature under the PoP domain)."""
        return bytes(blspy.PopSchemeMPL.pop_prove(self._secret))

    def __repr__(self) -> str:
        return f"BlsKey(public={self._public.hex()})"


@functools.lru_cache(maxsize=16384)
def _public_point(public: bytes) -> blspy.G1Element:
    """A parsed public key; cached, since parsing (a square root and a subgroup check)
    costs about 60 µs and a site sums the same roster keys every round."""
    if not isinstance(public, bytes) or len(public) != BLS_PUBLIC_KEY_LEN:
        raise IntegrityError("a BLS public key is 48 bytes")
    if public == _INFINITY_G1:
        raise IntegrityError("the identity element is not a BLS public key")
    try:
        return blspy.G1Element.from_bytes(public)
    except (ValueError, RuntimeError):
        raise IntegrityError("not a BLS public key") from None


def _signature_point(signature: bytes) -> blspy.G2Element:
    if not isinstance(signature, bytes) or len(signature) != BLS_SIGNATURE_LEN:
        raise IntegrityError("a BLS signature is 96 bytes")
    if signature == _INFINITY_G2:
        raise IntegrityError("the identity element is not a BLS signature")
    try:
        return blspy.G2Element.from_bytes(signature)
    except (ValueError, RuntimeError):
        raise IntegrityError("not a BLS signature") from None


def check_possession(public: bytes, proof: bytes) -> None:
    """Return if ``proof`` proves possession of ``public``, else raise :class:`IntegrityError`.

    Every key that enters a roster must pass this before any aggregate is
    checked against it.
    """
    if not blspy.PopSchemeMPL.pop_verify(_public_point(public), _signature_point(proof)):
        raise IntegrityError("the BLS proof of possession did not verify")


def verify_one(public: bytes, message: bytes, signature: bytes) -> None:
    """Return if one party's ``signature`` over ``message`` is valid, else raise."""
    if not isinstance(message, bytes) or not blspy.PopSchemeMPL.verify(
        _public_point(public), message, _signature_point(signature)
    ):
        raise IntegrityError("BLS signature did not verify")


def aggregate(signatures: Sequence[bytes]) -> bytes:
    """One 96-byte signature standing for all of ``signatures`` (each checked as a point)."""
    if not signatures:
        raise ConfigError("nothing to aggregate")
    return bytes(blspy.PopSchemeMPL.aggregate([_signature_point(s) for s in signatures]))


def verify_aggregate(publics: Iterable[bytes], message: bytes, signature: bytes) -> None:
    """Return if every key in ``publics`` signed ``message`` into ``signature``, else raise.

    The keys must be distinct and each must have passed :func:`check_possession`
    (the caller's roster guarantees both); one pairing check whatever their number.
    """
    keys = list(publics)
    if not keys or len(set(keys)) != len(keys) or not isinstance(message, bytes):
        raise IntegrityError("an aggregate needs distinct signers")
    total = _public_point(keys[0])
    for key in keys[1:]:
        total = total + _public_point(key)
    if not blspy.PopSchemeMPL.verify(total, message, _signature_point(signature)):
        raise IntegrityError("the aggregate signature did not verify")


def check_roster(keys: Mapping[str, bytes], proofs: Mapping[str, bytes]) -> dict[str, bytes]:
    """The roster's BLS keys, each with its proof of possession checked, all distinct."""
    if set(keys) != set(proofs):
        raise IntegrityError("every BLS key needs its proof of possession")
    if len(set(keys.values())) != len(keys):
        raise IntegrityError("two parties share one BLS key")
    for name, public in keys.items():
        try:
            check_possession(public, proofs[name])
        except IntegrityError as exc:
            raise IntegrityError(f"BLS key of {name!r}: {exc}") from None
    return dict(keys)
