"""Who made an HE context, and who sent an upload: Ed25519 signatures checked against the roster.

Why: a TenSEAL context and a ciphertext carry no authentication of their own.
Without it, one flipped byte of the public context could set a negative clip
or another key id (and every honest update would then be refused), and a
ciphertext flipped on the path, or made under another key but labelled with
the right key id, would be added to the sum silently. So:

- a context is signed by the site that generated it (its *maker*); the server
  and every site check the signature against the roster before loading it;
- each site signs its upload, bound to the federation, round, site, key id,
  preset, dimension, weight, ``max_weight``, the round-start digest and a
  hash of the ciphertext bytes; the server checks it before adding, and the
  aggregate carries each summand's signed header (not its ciphertexts), so
  every site rechecks who was summed and finds its own upload there. That
  the sum is exactly those uploads added stays the server's word.

A signature binds bytes to a sender; it does not prove the ciphertext
encrypts a bounded value (a site holds the secret key and can encrypt
anything). Sites therefore also check the decrypted aggregate for
feasibility, in :mod:`securefl.he._decrypt`.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping

from securefl.errors import ConfigError, IntegrityError, WireError
from securefl.hazmat.sign import SigningKey, signed_message, verify
from securefl.wire import SERVER, pack, unpack

__all__ = [
    "PUBLIC_CONTEXT_DOMAIN",
    "SECRET_CONTEXT_DOMAIN",
    "UPDATE_DOMAIN",
    "chunks_digest",
    "open_signed_context",
    "roster_key",
    "sign_context",
    "update_message",
]

PUBLIC_CONTEXT_DOMAIN = "he/public-context/v1"
SECRET_CONTEXT_DOMAIN = "he/secret-context/v1"  # noqa: S105 (a domain name, not a secret)
UPDATE_DOMAIN = "he/update/v2"
_FORMAT = "securefl-he-signed-context"
_FIELDS = {"v", "format", "kind", "federation", "maker", "context", "signature"}
_KINDS = {"public": PUBLIC_CONTEXT_DOMAIN, "secret": SECRET_CONTEXT_DOMAIN}


def roster_key(roster: Mapping[str, bytes], party: str) -> bytes:
    """The identity key of a *site* on the roster; the server is never a maker nor a sender."""
    if party == SERVER or party not in roster:
        raise IntegrityError("signer is not a site on the roster")
    return roster[party]


def sign_context(
    context: bytes, *, kind: str, federation: str, maker: str, signing_key: SigningKey
) -> bytes:
    """Wrap serialized context bytes in the maker's signature."""
    if kind not in _KINDS:
        raise ConfigError("kind must be 'public' or 'secret'")
    if not isinstance(signing_key, SigningKey):
        raise ConfigError("signing_key must be the maker's SigningKey")
    if maker == SERVER or not maker:
        raise ConfigError("an HE context is made by a site, never by the server")
    signature = signing_key.sign(signed_message(_KINDS[kind], federation, maker, context))
    return pack(
        {
            "v": 1,
            "format": _FORMAT,
            "kind": kind,
            "federation": federation,
            "maker": maker,
            "context": context,
            "signature": signature,
        }
    )


def open_signed_context(
    data: bytes,
    *,
    kind: str,
    roster: Mapping[str, bytes],
    federation: str,
    maker: str | None = None,
) -> tuple[str, bytes]:
    """Check a signed context against the roster; returns ``(maker, context bytes)``.

    ``maker`` pins the designated key maker (from the party's own
    configuration): a context signed by any other roster site is refused.
    ``None`` accepts any roster site as maker.

    Raises :class:`WireError` for bytes that are not a signed context and
    :class:`IntegrityError` (opaque) for a wrong federation, an unknown or
    server maker, or a signature that does not verify.
    """
    obj = unpack(data)
    if not isinstance(obj, dict) or set(obj) != _FIELDS or obj["format"] != _FORMAT:
        raise WireError("not a signed securefl HE context")
    if obj["v"] != 1 or obj["kind"] != kind:
        raise WireError(f"expected a signed {kind} HE context, version 1")
    signer, inner, sig = obj["maker"], obj["context"], obj["signature"]
    if not isinstance(signer, str) or not isinstance(inner, bytes) or not isinstance(sig, bytes):
        raise WireError("signed HE context fields have the wrong types")
    if obj["federation"] != federation:
        raise IntegrityError("HE context was signed for another federation")
    if maker is not None and signer != maker:
        raise IntegrityError(f"HE context was made by {signer!r}, not the designated maker")
    verify(roster_key(roster, signer), signed_message(_KINDS[kind], federation, signer, inner), sig)
    return signer, inner


def chunks_digest(chunks: list[bytes]) -> bytes:
    """SHA-256 over a chunk list, each chunk length-prefixed (no two lists collide)."""
    h = hashlib.sha256(b"securefl/he/chunks/v1\x00")
    h.update(struct.pack(">Q", len(chunks)))
    for chunk in chunks:
        h.update(struct.pack(">Q", len(chunk)))
        h.update(chunk)
    return h.digest()


def update_message(
    *,
    federation: str,
    round_id: int,
    site: str,
    key_id: bytes,
    preset: str,
    dimension: int,
    weight: float,
    max_weight: float,
    round_digest: bytes,
    digest: bytes,
) -> bytes:
    """The bytes a site signs for its ``he/update`` (and a site rechecks in an aggregate).

    ``round_digest`` is the SHA-256 of the round start the site was given
    (``RoundContext.round_digest``): sites opening a sum refuse one whose
    summands were given different rounds (a per-site model, Pasquini et al.).
    """
    return signed_message(
        UPDATE_DOMAIN,
        federation,
        round_id,
        site,
        key_id,
        preset,
        dimension,
        struct.pack(">d", weight),
        struct.pack(">d", max_weight),
        round_digest,
        digest,
    )
