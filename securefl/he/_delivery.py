"""Delivering the federation's secret HE context from its keymaker site to the other sites.

Why: the coordinator must never hold an HE secret key (a provisioner that
makes the key, as NVFlare does, can decrypt every update). So one site, the
*keymaker*, makes the keys; the server receives only the maker-signed public
context and, for each other site, a *sealed bundle* it can relay but not open:

- the bundle's plaintext is the maker-signed secret context
  (:meth:`SecretContext.signed_secret_context`), so a recipient checks the
  maker's Ed25519 signature against its pinned roster before using it;
- it is sealed to the recipient's X25519 *exchange* key from the roster:
  a fresh ephemeral X25519 key per bundle, HKDF-SHA256 with an ``info``
  naming this purpose, the federation, maker, recipient, the public
  context's hash and both public keys, then AES-256-GCM whose associated data
  binds the federation, maker, recipient, the hash of the signed public
  context and the ephemeral key. The server holds no X25519 private key at all.

A recipient refuses a bundle addressed to another site, from a maker its
own configuration does not name, sealed under another public context than
the one the server announces, or whose secret context's key id differs
from that public context's (a server pairing one maker-signed public context
with bundles of another key set). Every refusal is one opaque
:class:`IntegrityError`, as for any failed authentication.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

from securefl.errors import IntegrityError, WireError
from securefl.hazmat.aead import NONCE_LEN, open_
from securefl.hazmat.aead import _seal_from_parts as _aead_seal
from securefl.hazmat.keys import KEY_LEN, KeyPair, derive_key
from securefl.hazmat.sign import SigningKey, signed_message
from securefl.he._context import PublicContext, SecretContext
from securefl.he._trust import open_signed_context
from securefl.wire import SERVER, pack, unpack

__all__ = [
    "BUNDLE_AD_DOMAIN",
    "BUNDLE_KEY_DOMAIN",
    "KeyMaterial",
    "bundle_header",
    "check_public_context",
    "make_key_material",
    "open_bundle",
    "public_context_hash",
    "seal_bundle",
]

BUNDLE_KEY_DOMAIN = "he/bundle-key/v1"
BUNDLE_AD_DOMAIN = "he/bundle-ad/v1"
_FORMAT = "securefl-he-sealed-context"
_FIELDS = {"v", "format", "federation", "maker", "recipient", "public_sha256", "ephemeral", "box"}
_MATERIAL = "securefl-he-key-material"


def public_context_hash(signed_public_context: bytes) -> bytes:
    """SHA-256 of the signed public context a bundle belongs to."""
    return hashlib.sha256(signed_public_context).digest()


def _info(
    federation: str, maker: str, recipient: str, public_sha: bytes, eph: bytes, rcpt: bytes
) -> bytes:
    # signed_message is the project's one typed, length-prefixed field encoder
    # under a domain; here it builds HKDF info and associated data, not a signature
    return signed_message(BUNDLE_KEY_DOMAIN, federation, maker, recipient, public_sha, eph, rcpt)


def _ad(federation: str, maker: str, recipient: str, public_sha: bytes, eph: bytes) -> bytes:
    return signed_message(BUNDLE_AD_DOMAIN, federation, maker, recipient, public_sha, eph)


def _seal_from_parts(
    signed_secret_context: bytes,
    *,
    federation: str,
    maker: str,
    recipient: str,
    recipient_exchange_key: bytes,
    signed_public_context: bytes,
    ephemeral: KeyPair,
    nonce: bytes,
) -> bytes:
    """:func:`seal_bundle` with the ephemeral key and nonce given. Known-answer tests only."""
    if recipient in (maker, SERVER) or not recipient:
        raise IntegrityError("a sealed HE context is addressed to another site, never the server")
    public_sha = public_context_hash(signed_public_context)
    eph = ephemeral.public_bytes()
    key = derive_key(
        ephemeral,
        recipient_exchange_key,
        info=_info(federation, maker, recipient, public_sha, eph, recipient_exchange_key),
    )
    box = _aead_seal(
        key, nonce, signed_secret_context, _ad(federation, maker, recipient, public_sha, eph)
    )
    return pack(
        {
            "v": 1,
            "format": _FORMAT,
            "federation": federation,
            "maker": maker,
            "recipient": recipient,
            "public_sha256": public_sha,
            "ephemeral": eph,
            "box": box,
        }
    )


def seal_bundle(
    signed_secret_context: bytes,
    *,
    federation: str,
    maker: str,
    recipient: str,
    recipient_exchange_key: bytes,
    signed_public_context: bytes,
) -> bytes:
    """Seal the maker-signed secret context to one recipient's X25519 exchange key."""
    return _seal_from_parts(
        signed_secret_context,
        federation=federation,
        maker=maker,
        recipient=recipient,
        recipient_exchange_key=recipient_exchange_key,
        signed_public_context=signed_public_context,
        ephemeral=KeyPair.generate(),
        nonce=os.urandom(NONCE_LEN),
    )


def _parse_bundle(data: bytes) -> dict[str, Any]:
    obj = unpack(data)
    if not isinstance(obj, dict) or set(obj) != _FIELDS or obj["format"] != _FORMAT:
        raise WireError("not a sealed securefl HE context")
    if obj["v"] != 1:
        raise WireError(f"unsupported sealed HE context version {obj['v']!r}")
    for name in ("federation", "maker", "recipient"):
        if not isinstance(obj[name], str):
            raise WireError("sealed HE context fields have the wrong types")
    for name, size in (("public_sha256", 32), ("ephemeral", KEY_LEN)):
        if not isinstance(obj[name], bytes) or len(obj[name]) != size:
            raise WireError("sealed HE context fields have the wrong types")
    if not isinstance(obj["box"], bytes):
        raise WireError("sealed HE context fields have the wrong types")
    return obj


def bundle_header(data: bytes) -> tuple[str, str, str, bytes]:
    """``(federation, maker, recipient, public context hash)`` of a bundle, unauthenticated.

    What the relaying server may check (routing); only the recipient can
    authenticate it, by opening it.
    """
    obj = _parse_bundle(data)
    return obj["federation"], obj["maker"], obj["recipient"], obj["public_sha256"]


def _unseal(
    data: bytes,
    *,
    recipient: str,
    exchange_key: KeyPair,
    federation: str,
    keymaker: str,
    signed_public_context: bytes,
) -> bytes:
    """The sealed plaintext (the maker-signed secret context), or one opaque IntegrityError.

    Every expectation is the recipient's own; the header fields are compared
    for a clear refusal, and the key derivation and associated data bind them
    again, so a header rewritten on the way still cannot open.
    """
    obj = _parse_bundle(data)
    public_sha = public_context_hash(signed_public_context)
    if (
        obj["federation"] != federation
        or obj["recipient"] != recipient
        or obj["maker"] != keymaker
        or obj["public_sha256"] != public_sha
    ):
        raise IntegrityError("the sealed HE context is not for this site, maker and key set")
    eph = obj["ephemeral"]
    own = exchange_key.public_bytes()
    key = derive_key(
        exchange_key, eph, info=_info(federation, keymaker, recipient, public_sha, eph, own)
    )
    return open_(
        key, obj["box"], associated_data=_ad(federation, keymaker, recipient, public_sha, eph)
    )


def open_bundle(
    data: bytes,
    *,
    recipient: str,
    exchange_key: KeyPair,
    federation: str,
    keymaker: str,
    identity_keys: Mapping[str, bytes],
    signed_public_context: bytes,
) -> SecretContext:
    """Open this site's bundle and return the federation's secret context.

    ``recipient``, ``exchange_key``, ``federation``, ``keymaker`` and
    ``identity_keys`` (the pinned roster) are this site's own; only the
    bundle and ``signed_public_context`` come through the server. The maker's
    signatures on the public and on the secret context are checked against
    the roster, and the two must hold the same key.
    """
    public = PublicContext.from_signed(
        signed_public_context, roster=identity_keys, federation=federation, maker=keymaker
    )
    plain = _unseal(
        data,
        recipient=recipient,
        exchange_key=exchange_key,
        federation=federation,
        keymaker=keymaker,
        signed_public_context=signed_public_context,
    )
    secret = SecretContext.from_signed(
        plain, roster=identity_keys, federation=federation, maker=keymaker
    )
    if (secret.key_id, secret.preset.name, secret.clip) != (
        public.key_id,
        public.preset.name,
        public.clip,
    ):
        raise IntegrityError("the sealed HE context holds another key than the public context")
    return secret


class KeyMaterial:
    """What the keymaker sends the server: the signed public context and one bundle per site."""

    def __init__(self, *, signed_public_context: bytes, bundles: Mapping[str, bytes]) -> None:
        self.signed_public_context = signed_public_context
        self.bundles = dict(bundles)

    def to_bytes(self) -> bytes:
        return pack(
            {
                "v": 1,
                "format": _MATERIAL,
                "public": self.signed_public_context,
                "bundles": self.bundles,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyMaterial:
        obj = unpack(data)
        if not isinstance(obj, dict) or set(obj) != {"v", "format", "public", "bundles"}:
            raise WireError("not securefl HE key material")
        if obj["v"] != 1 or obj["format"] != _MATERIAL or not isinstance(obj["public"], bytes):
            raise WireError("not securefl HE key material, version 1")
        bundles = obj["bundles"]
        if not isinstance(bundles, dict) or not all(
            isinstance(k, str) and isinstance(v, bytes) for k, v in bundles.items()
        ):
            raise WireError("HE key material bundles have the wrong types")
        return cls(signed_public_context=obj["public"], bundles=bundles)


def make_key_material(
    secret: SecretContext,
    *,
    federation: str,
    maker: str,
    signing_key: SigningKey,
    exchange_keys: Mapping[str, bytes],
) -> KeyMaterial:
    """The keymaker's material: its signed public context and a bundle for every other site.

    ``exchange_keys`` is the pinned roster's X25519 keys (the maker's own
    entry, if present, is skipped: it keeps its context).
    """
    public = secret.signed_public_context(
        federation=federation, maker=maker, signing_key=signing_key
    )
    signed_secret = secret.signed_secret_context(
        federation=federation, maker=maker, signing_key=signing_key, include_secret_key=True
    )
    bundles = {
        site: seal_bundle(
            signed_secret,
            federation=federation,
            maker=maker,
            recipient=site,
            recipient_exchange_key=key,
            signed_public_context=public,
        )
        for site, key in sorted(exchange_keys.items())
        if site not in (maker, SERVER)
    }
    return KeyMaterial(signed_public_context=public, bundles=bundles)


def check_public_context(
    signed_public_context: bytes, *, identity_keys: Mapping[str, bytes], federation: str, maker: str
) -> None:
    """The server's check of the keymaker's public context (signature only, no TenSEAL)."""
    open_signed_context(
        signed_public_context,
        kind="public",
        roster=identity_keys,
        federation=federation,
        maker=maker,
    )
