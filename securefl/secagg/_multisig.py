"""The neighbourhood round's cohort-wide consistency check, as one BLS multi-signature.

Why: the consistency round is what stops a cheating server from showing two
honest sites two survivor lists (one releasing a site's self-mask share, the
other its masking-key share). Its guarantee rests on one count: a site
releases shares only if n - m sites of the *cohort* signed the list it
signed, so two lists share n - 2m signers. A site's holders alone cannot
give that (``threat_models/mask.md``: 2t - k colluders split a view when only
holders sign). With Ed25519 the count costs n - m verifications per site;
here each site signs the list with its BLS key, the server adds the
signatures into one, and a site checks the one aggregate against the sum of
the signers' roster keys: the same count, at one pairing check per site.

Each roster key comes with a proof of possession, checked before it is
used, so no party can pick its key to cancel others' (the rogue-key attack).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping

from securefl.errors import AbortError, ConfigError, IntegrityError
from securefl.hazmat import bls
from securefl.hazmat.sign import SigningKey
from securefl.secagg import _messages as m
from securefl.secagg._plan import MaskPlan

__all__ = [
    "BlsRoster",
    "NeighbourhoodSigner",
    "bls_entry",
    "check_aggregate",
    "checked_bls_roster",
    "split_valid",
    "unmask_requests",
]

BlsRoster = Mapping[str, tuple[bytes, bytes]]
"""Each roster site's BLS public key and its proof of possession."""


def bls_entry(identity: SigningKey) -> tuple[bytes, bytes]:
    """The roster entry of the party holding ``identity``: its BLS public key and proof.

    What provisioning (or a simulation) puts on the roster beside the Ed25519 key.
    """
    key = bls.BlsKey.from_identity(identity)
    return key.public_bytes(), key.prove_possession()


@functools.lru_cache(maxsize=65536)
def _possession_ok(public: bytes, proof: bytes) -> bool:
    """One proof checked once per process (a pairing, ~1 ms): every round and every
    site of an in-process simulation share the answer."""
    try:
        bls.check_possession(public, proof)
    except IntegrityError:
        return False
    return True


def checked_bls_roster(bls_roster: BlsRoster | None, sites: Collection[str]) -> dict[str, bytes]:
    """The BLS public keys of ``sites``, each with its proof of possession checked."""
    if bls_roster is None:
        raise ConfigError(
            "the neighbourhood round (mask.neighbourhood) needs each site's BLS key on the "
            "roster; provision the federation again with this version of securefl"
        )
    missing = set(sites) - set(bls_roster)
    if missing:
        raise ConfigError(f"sites without a BLS key on the roster: {sorted(missing)}")
    keys: dict[str, bytes] = {}
    for site in sites:
        entry = bls_roster[site]
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise ConfigError(f"the BLS roster entry of {site!r} must be (public key, proof)")
        public, proof = entry
        if not (isinstance(public, bytes) and isinstance(proof, bytes)):
            raise ConfigError(f"the BLS roster entry of {site!r} must be bytes")
        if not _possession_ok(public, proof):
            raise ConfigError(f"the BLS key of {site!r} has no valid proof of possession")
        keys[site] = public
    if len(set(keys.values())) != len(keys):
        raise ConfigError("two roster sites share one BLS key")
    return keys


class NeighbourhoodSigner:
    """A site's BLS key, derived from its identity and checked against the roster."""

    __slots__ = ("_key",)

    def __init__(self, identity: SigningKey, site_id: str, keys: Mapping[str, bytes]) -> None:
        self._key = bls.BlsKey.from_identity(identity)
        if keys.get(site_id) != self._key.public_bytes():
            raise ConfigError(f"the roster's BLS key of {site_id!r} does not match its identity")

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def check_aggregate(
    *,
    message: bytes,
    cohort: tuple[str, ...],
    survivors: Collection[str],
    holders: Collection[str],
    keys: Mapping[str, bytes],
    signers_field: bytes,
    aggregate: bytes,
    threshold: int,
    quorum: int,
) -> None:
    """Raise :class:`AbortError` unless ``quorum`` survivors, t of them holders, signed ``message``.

    The same count as the cohort-wide round's Ed25519 check (n - m of the
    cohort, t among this site's holders), proven by one aggregate signature.
    """
    try:
        signers = m.unpack_members(cohort, signers_field)
    except Exception as exc:  # a malformed bitmap is the server's fault
        raise AbortError(f"the signer list is malformed: {exc}") from None
    strangers = set(signers) - set(survivors)
    if strangers:
        raise AbortError(f"consistency signature from {sorted(strangers)[0]!r}, not a survivor")
    if len(set(signers) & set(holders)) < threshold:
        raise AbortError(f"{len(signers)} consistency signatures, below the threshold")
    if len(signers) < quorum:
        raise AbortError(
            f"{len(signers)} consistency signatures over this list; the round needs "
            f"{quorum} from the cohort"
        )
    try:
        bls.verify_aggregate([keys[s] for s in signers], message, aggregate)
    except IntegrityError:
        raise AbortError("consistency signatures do not all sign this survivor list") from None


def split_valid(
    signatures: Mapping[str, bytes], keys: Mapping[str, bytes], message: bytes
) -> tuple[dict[str, bytes], dict[str, str]]:
    """The server's side: signatures that verify over ``message``, and why the others fail.

    One aggregate check first (one pairing); only if it fails is each
    signature checked alone, so honest rounds cost the server O(1) pairings.
    """
    if not signatures:
        return {}, {}
    try:
        bls.verify_aggregate(
            [keys[s] for s in signatures], message, bls.aggregate(list(signatures.values()))
        )
        return dict(signatures), {}
    except IntegrityError:
        pass
    good: dict[str, bytes] = {}
    bad: dict[str, str] = {}
    for site, sig in signatures.items():
        try:
            bls.verify_one(keys[site], message, sig)
            good[site] = sig
        except IntegrityError:
            bad[site] = "consistency signature did not verify"
    return good, bad


def unmask_requests(
    plan: MaskPlan,
    survivors: bytes,
    dropped: list[str],
    signatures: Mapping[str, bytes],
    extra: Mapping[str, Mapping[str, object]],
) -> dict[str, bytes]:
    """Each signer's unmask request: the cohort's survivors and signers as bitmaps, one
    aggregate of ``signatures`` (already checked), its holders' part of ``dropped``, and
    its ``extra`` fields (the peers' masked-with claims)."""
    signers = m.pack_members(plan.cohort, sorted(signatures))
    aggregate = bls.aggregate([signatures[u] for u in sorted(signatures)])
    return {
        u: m.encode(
            m.UNMASK_REQUEST,
            survivors=survivors,
            dropped=plan.shown_to(u, dropped),
            signers=signers,
            aggregate=aggregate,
            **extra.get(u, {}),
        )
        for u in signatures
    }
