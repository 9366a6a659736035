"""A site's request carries its BLS key: what the coordinator checks before it goes on the roster.

The site derives its BLS key from the identity key it made, proves
possession of it, signs both with the identity key, and signs the request
with the BLS key too. A relay or a malicious site that puts another key in
the request (a copy of another site's, with its valid proof; a rogue key
without one) is refused when the coordinator loads the request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from securefl.errors import DataError, IntegrityError
from securefl.hazmat.bls import BlsKey
from securefl.hazmat.sign import SigningKey
from securefl.provision import Kit, SiteRequest, make_site_request, provision
from securefl.provision.pki import load_private_key
from securefl.provision.request import _message
from securefl.secagg import bls_entry


def _identity(home: Path) -> SigningKey:
    key = load_private_key(home / "identity.key.pem")
    assert isinstance(key, Ed25519PrivateKey)
    return SigningKey(key)


def _resigned(data: dict[str, Any], identity: SigningKey, bls_key: BlsKey | None) -> None:
    """Sign ``data`` again as its sender would (identity, and the BLS key if it holds one)."""
    der = x509.load_pem_x509_csr(data["csr"].encode("ascii")).public_bytes(
        serialization.Encoding.DER
    )
    message = _message(
        data["site"],
        der,
        bytes.fromhex(data["identity_key"]),
        bytes.fromhex(data["exchange_key"]),
        bytes.fromhex(data["bls_key"]),
        bytes.fromhex(data["bls_proof"]),
    )
    data["signature"] = identity.sign(message).hex()
    if bls_key is not None:
        data["bls_signature"] = bls_key.sign(message).hex()


def test_a_request_carries_the_bls_key_its_identity_derives(tmp_path: Path) -> None:
    home = tmp_path / "home"
    request = SiteRequest.load(make_site_request("site-b", home))
    assert (request.bls_key, request.bls_proof) == bls_entry(_identity(home))
    assert sorted(p.name for p in home.iterdir()) == [
        "exchange.key.pem", "identity.key.pem", "site-b.req", "tls.key.pem",
    ]  # fmt: skip  # no BLS secret file: it is derived from the identity seed


def test_a_bls_key_swapped_into_a_relayed_request_is_refused(tmp_path: Path) -> None:
    """A relay swaps in a key of its own (valid proof) without the site's identity key."""
    path = make_site_request("site-b", tmp_path / "home")
    data = json.loads(path.read_text())
    public, proof = bls_entry(SigningKey.generate())
    data.update(bls_key=public.hex(), bls_proof=proof.hex())
    path.write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="not signed by its identity key"):
        SiteRequest.load(path)


def test_a_site_claiming_another_sites_bls_key_is_refused(tmp_path: Path) -> None:
    """site-b copies site-a's BLS key and proof (both public, the proof valid) and signs
    the request with its own identity: the BLS key's holder did not sign it."""
    a = SiteRequest.load(make_site_request("site-a", tmp_path / "a"))
    path = make_site_request("site-b", tmp_path / "b")
    data = json.loads(path.read_text())
    data.update(bls_key=a.bls_key.hex(), bls_proof=a.bls_proof.hex())
    _resigned(data, _identity(tmp_path / "b"), None)  # b cannot sign with a's BLS key
    path.write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="BLS key did not sign the request"):
        SiteRequest.load(path)


def test_a_bls_key_without_a_valid_proof_is_refused(tmp_path: Path) -> None:
    """A key whose proof is another key's: signed by the identity and the BLS key alike,
    so only the proof of possession tells (a rogue key has no valid proof)."""
    home = tmp_path / "home"
    path = make_site_request("site-b", home)
    data = json.loads(path.read_text())
    own = BlsKey.from_identity(_identity(home))
    data["bls_proof"] = bls_entry(SigningKey.generate())[1].hex()
    _resigned(data, _identity(home), own)
    path.write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="proof of possession"):
        SiteRequest.load(path)


def test_a_request_from_an_older_securefl_is_refused_in_one_line(tmp_path: Path) -> None:
    path = make_site_request("site-b", tmp_path / "home")
    data = json.loads(path.read_text())
    for name in ("bls_key", "bls_proof", "bls_signature"):
        del data[name]
    data["version"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as info:
        SiteRequest.load(path)
    message = str(info.value)
    assert "\n" not in message and "provision request --force" in message


def test_a_requested_sites_bls_key_reaches_the_roster_and_its_kit_loads(
    federation: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    request = SiteRequest.load(make_site_request("site-b", home))
    provision(federation / "fed.toml", federation / "kits", requests=[request])
    for path in (federation / "kits" / "site-b").iterdir():
        (home / path.name).write_bytes(path.read_bytes())
    kit = Kit.load(home)
    assert kit.roster.site("site-b").bls == bls_entry(kit.signing_key())
    assert Kit.load(federation / "kits" / "server").roster.bls_roster()["site-b"] == (
        request.bls_key,
        request.bls_proof,
    )
