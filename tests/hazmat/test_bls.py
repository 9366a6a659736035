"""BLS multi-signatures (securefl.hazmat.bls): published and derived vectors, must-fail, properties.

The vectors are in tests/vectors/bls_multisig.json (``generate_bls.py``):
Ethereum consensus-spec cases of the same ciphersuite, each site's key as
derived from a fixed Ed25519 seed (recomputed in the generator without
blspy), and encodings every check must refuse.
"""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import Any

import blspy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.errors import ConfigError, IntegrityError
from securefl.hazmat import bls
from securefl.hazmat.sign import SigningKey
from securefl.secagg import bls_entry

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "bls_multisig.json").read_text())
ETH2, DERIVED = VECTORS["eth2"], VECTORS["derived"]


def _hex(s: str) -> bytes:
    return bytes.fromhex(s)


# -- known answers ---------------------------------------------------------------


@pytest.mark.parametrize("v", ETH2["sign"], ids=lambda v: v["public"][:8])
def test_published_sign_vectors(v: dict[str, str]) -> None:
    key = bls.BlsKey(blspy.PrivateKey.from_bytes(_hex(v["secret"])))
    assert key.public_bytes().hex() == v["public"]
    assert key.sign(_hex(v["message"])).hex() == v["signature"]
    bls.verify_one(_hex(v["public"]), _hex(v["message"]), _hex(v["signature"]))


def test_published_aggregate_and_fast_aggregate_verify_vectors() -> None:
    agg = ETH2["aggregate"]
    assert bls.aggregate([_hex(s) for s in agg["signatures"]]).hex() == agg["aggregate"]
    v = ETH2["fast_aggregate_verify"]
    publics = [_hex(p) for p in v["publics"]]
    bls.verify_aggregate(publics, _hex(v["message"]), _hex(v["signature"]))
    for fewer in (publics[:2], publics[1:]):  # one signer dropped
        with pytest.raises(IntegrityError):
            bls.verify_aggregate(fewer, _hex(v["message"]), _hex(v["signature"]))


@pytest.mark.parametrize("v", DERIVED["sites"], ids=lambda v: v["bls_public"][:8])
def test_keys_derived_from_an_identity_match_the_vectors(v: dict[str, str]) -> None:
    """From the Ed25519 seed alone: the BLS public key, its proof, a signature, the roster entry."""
    identity = SigningKey.from_private_bytes(_hex(v["ed25519_seed"]))
    assert identity.public_bytes().hex() == v["ed25519_public"]
    key = bls.BlsKey.from_identity(identity)
    assert key.public_bytes().hex() == v["bls_public"]
    assert key.prove_possession().hex() == v["proof_of_possession"]
    assert key.sign(_hex(DERIVED["message"])).hex() == v["signature"]
    assert bls_entry(identity) == (_hex(v["bls_public"]), _hex(v["proof_of_possession"]))
    bls.check_possession(_hex(v["bls_public"]), _hex(v["proof_of_possession"]))


def test_the_aggregate_of_the_three_derived_signatures_matches_and_verifies() -> None:
    sites = DERIVED["sites"]
    message = _hex(DERIVED["message"])
    agg = bls.aggregate([_hex(v["signature"]) for v in sites])
    assert agg.hex() == DERIVED["aggregate"]
    publics = [_hex(v["bls_public"]) for v in sites]
    bls.verify_aggregate(publics, message, agg)
    with pytest.raises(IntegrityError):
        bls.verify_aggregate(publics[:2], message, agg)
    with pytest.raises(IntegrityError):
        bls.verify_aggregate(publics, message + b"!", agg)


# -- must fail -------------------------------------------------------------------

_PUBLIC = [v for v in VECTORS["must_fail"] if v["kind"] == "public"]
_SIGNATURE = [v for v in VECTORS["must_fail"] if v["kind"] == "signature"]


@pytest.mark.parametrize("v", _PUBLIC, ids=lambda v: v["why"])
def test_must_fail_public_keys_are_refused_everywhere(v: dict[str, str]) -> None:
    good = DERIVED["sites"][0]
    bad, message = _hex(v["bytes"]), _hex(DERIVED["message"])
    with pytest.raises(IntegrityError):
        bls.verify_one(bad, message, _hex(good["signature"]))
    with pytest.raises(IntegrityError):
        bls.check_possession(bad, _hex(good["proof_of_possession"]))
    with pytest.raises(IntegrityError):
        bls.verify_aggregate([_hex(good["bls_public"]), bad], message, _hex(good["signature"]))


@pytest.mark.parametrize("v", _SIGNATURE, ids=lambda v: v["why"])
def test_must_fail_signatures_are_refused_everywhere(v: dict[str, str]) -> None:
    good = DERIVED["sites"][0]
    bad, message = _hex(v["bytes"]), _hex(DERIVED["message"])
    with pytest.raises(IntegrityError):
        bls.verify_one(_hex(good["bls_public"]), message, bad)
    with pytest.raises(IntegrityError):
        bls.check_possession(_hex(good["bls_public"]), bad)
    fast = ETH2["fast_aggregate_verify"]
    with pytest.raises(IntegrityError):
        bls.verify_aggregate([_hex(p) for p in fast["publics"]], _hex(fast["message"]), bad)


def test_a_proof_of_possession_is_not_a_signature_and_not_another_keys_proof() -> None:
    """The PoP domain is separate: a proof never verifies as a message signature, nor for
    another key, and a signature over the key's own bytes is no proof."""
    a, b = DERIVED["sites"][0], DERIVED["sites"][1]
    with pytest.raises(IntegrityError):
        bls.check_possession(_hex(a["bls_public"]), _hex(b["proof_of_possession"]))
    with pytest.raises(IntegrityError):
        bls.verify_one(_hex(a["bls_public"]), _hex(a["bls_public"]), _hex(a["proof_of_possession"]))
    key = bls.BlsKey.from_identity(SigningKey.from_private_bytes(_hex(a["ed25519_seed"])))
    with pytest.raises(IntegrityError):
        bls.check_possession(key.public_bytes(), key.sign(key.public_bytes()))


def test_the_identity_key_with_the_identity_signature_verifies_nothing() -> None:
    """e(O, H(m)) = e(g, O): the pair would "sign" every message; both halves are refused."""
    key, sig = bytes([0xC0]) + bytes(47), bytes([0xC0]) + bytes(95)
    for message in (b"", _hex(DERIVED["message"])):
        with pytest.raises(IntegrityError):
            bls.verify_one(key, message, sig)
        with pytest.raises(IntegrityError):
            bls.verify_aggregate([key], message, sig)
    with pytest.raises(IntegrityError):
        bls.check_possession(key, sig)


def test_no_aggregate_of_nothing_and_no_repeated_signer() -> None:
    a = DERIVED["sites"][0]
    with pytest.raises(ConfigError):
        bls.aggregate([])
    twice = bls.aggregate([_hex(a["signature"])] * 2)
    with pytest.raises(IntegrityError, match="distinct"):
        bls.verify_aggregate([_hex(a["bls_public"])] * 2, _hex(DERIVED["message"]), twice)
    with pytest.raises(IntegrityError):
        bls.verify_aggregate([], _hex(DERIVED["message"]), _hex(a["signature"]))


def test_check_roster_needs_every_proof_and_distinct_keys() -> None:
    sites = DERIVED["sites"]
    keys = {f"s{i}": _hex(v["bls_public"]) for i, v in enumerate(sites)}
    proofs = {f"s{i}": _hex(v["proof_of_possession"]) for i, v in enumerate(sites)}
    assert bls.check_roster(keys, proofs) == keys
    with pytest.raises(IntegrityError, match="proof"):
        bls.check_roster(keys, {k: p for k, p in proofs.items() if k != "s0"})
    with pytest.raises(IntegrityError, match="'s1'"):
        bls.check_roster(keys, {**proofs, "s1": proofs["s0"]})
    with pytest.raises(IntegrityError, match="share one"):
        bls.check_roster({**keys, "s3": keys["s0"]}, {**proofs, "s3": proofs["s0"]})


# -- properties ------------------------------------------------------------------

_POOL = [
    bls.BlsKey.from_identity(SigningKey.from_private_bytes(bytes([i + 1]) * 32)) for i in range(6)
]
_MESSAGE = b"one survivor list"
_SIGS = [k.sign(_MESSAGE) for k in _POOL]
_PUBS = [k.public_bytes() for k in _POOL]


@settings(max_examples=25, deadline=None)
@given(
    signed=st.sets(st.integers(0, 5), min_size=1),
    change=st.integers(0, 5),
)
def test_an_aggregate_verifies_for_exactly_the_set_that_signed(
    signed: set[int], change: int
) -> None:
    """Dropping a signer from, or adding a non-signer to, the claimed set makes it fail."""
    agg = bls.aggregate([_SIGS[i] for i in sorted(signed)])
    bls.verify_aggregate([_PUBS[i] for i in sorted(signed)], _MESSAGE, agg)
    claimed = signed ^ {change}  # one signer dropped or one added
    if claimed:
        with pytest.raises(IntegrityError):
            bls.verify_aggregate([_PUBS[i] for i in sorted(claimed)], _MESSAGE, agg)
    with pytest.raises(IntegrityError):
        bls.verify_aggregate([_PUBS[i] for i in sorted(signed)], _MESSAGE + b"\x00", agg)


@settings(max_examples=10, deadline=None)
@given(a=st.binary(min_size=32, max_size=32), b=st.binary(min_size=32, max_size=32))
def test_from_identity_is_deterministic_and_differs_across_identities(a: bytes, b: bytes) -> None:
    first = bls.BlsKey.from_identity(SigningKey.from_private_bytes(a))
    again = bls.BlsKey.from_identity(SigningKey.from_private_bytes(a))
    assert first.public_bytes() == again.public_bytes()
    assert first.sign(_MESSAGE) == again.sign(_MESSAGE)
    other = bls.BlsKey.from_identity(SigningKey.from_private_bytes(b))
    assert (other.public_bytes() == first.public_bytes()) == (a == b)


def test_the_bls_key_is_not_the_identity_key_reused() -> None:
    """HKDF under its own label: the BLS secret is not the Ed25519 seed read as a scalar."""
    seed = _hex(DERIVED["sites"][0]["ed25519_seed"])
    direct = bls.BlsKey(blspy.PopSchemeMPL.key_gen(seed))
    derived = bls.BlsKey.from_identity(SigningKey.from_private_bytes(seed))
    assert direct.public_bytes() != derived.public_bytes()


@pytest.mark.parametrize(
    "leak",
    [pickle.dumps, copy.copy, copy.deepcopy, lambda k: k.__reduce_ex__(2)],
    ids=["pickle", "copy", "deepcopy", "reduce_ex"],
)
def test_a_bls_key_refuses_pickling_and_copying(leak: Any) -> None:
    key = _POOL[0]
    with pytest.raises(TypeError, match="refuses pickling"):
        leak(key)
    assert repr(key) == f"BlsKey(public={key.public_bytes().hex()})"  # the public half only


def test_from_identity_needs_a_securefl_signing_key() -> None:
    with pytest.raises(ConfigError):
        bls.BlsKey.from_identity(b"\x01" * 32)  # type: ignore[arg-type]
