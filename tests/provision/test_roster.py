"""The signed roster: a cheating coordinator (or anyone with write access to a kit) edits
roster.json to add a site of its own, swap a key or a certificate; every edit is refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.errors import DataError, IntegrityError, SecureFLError
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.sign import SigningKey
from securefl.provision.pki import CertificateAuthority, load_cert
from securefl.provision.roster import RosterServer, RosterSite, SignedRoster
from securefl.reports._canonical import canonical_bytes
from securefl.reports.roster import Roster


@pytest.fixture(scope="module")
def ca_cert(provisioned: Path):
    return load_cert(provisioned / "kits" / "ca" / "ca.cert.pem")


@pytest.fixture(scope="module")
def ca(provisioned: Path) -> CertificateAuthority:
    return CertificateAuthority.load(provisioned / "kits" / "ca")


@pytest.fixture(scope="module")
def signed(provisioned: Path) -> dict[str, Any]:
    return json.loads((provisioned / "kits" / "site-a" / "roster.json").read_text())


def _refused(data: object, ca_cert) -> None:
    with pytest.raises(SecureFLError):
        SignedRoster.from_dict(data, ca_cert)


def test_the_provisioned_roster_verifies_and_names_every_party(signed, ca_cert):
    roster = SignedRoster.from_dict(signed, ca_cert)
    assert roster.site_names == ("site-a", "site-b", "site-c")
    assert set(roster.identity_keys()) == {"site-a", "site-b", "site-c", "server"}
    assert set(roster.exchange_keys()) == {"site-a", "site-b", "site-c"}
    assert roster.server.hosts == ("coordinator.localhost", "127.0.0.1", "::1")
    audit = roster.audit_roster()
    assert isinstance(audit, Roster) and audit.server == roster.server.public_key
    assert audit.sites == {s.name: s.public_key for s in roster.sites}


def test_a_tampered_site_key_is_refused(signed, ca_cert):
    forged = copy.deepcopy(signed)
    forged["sites"][1]["public_key"] = SigningKey.generate().public_bytes().hex()
    with pytest.raises(IntegrityError):
        SignedRoster.from_dict(forged, ca_cert)


def test_a_tampered_exchange_key_is_refused(signed, ca_cert):
    forged = copy.deepcopy(signed)
    forged["sites"][0]["exchange_key"] = KeyPair.generate().public_bytes().hex()
    with pytest.raises(IntegrityError):
        SignedRoster.from_dict(forged, ca_cert)


def test_an_added_site_is_refused(signed, ca_cert):
    """The attack of the issue: the coordinator adds sites of its own to isolate one update."""
    forged = copy.deepcopy(signed)
    forged["sites"].append(
        {
            "name": "site-z",
            "public_key": SigningKey.generate().public_bytes().hex(),
            "exchange_key": KeyPair.generate().public_bytes().hex(),
            "cert_sha256": "ab" * 32,
        }
    )
    with pytest.raises(IntegrityError):
        SignedRoster.from_dict(forged, ca_cert)


def test_a_removed_site_is_refused(signed, ca_cert):
    forged = copy.deepcopy(signed)
    del forged["sites"][2]
    with pytest.raises(IntegrityError):
        SignedRoster.from_dict(forged, ca_cert)


def test_a_swapped_cert_fingerprint_is_refused(signed, ca_cert):
    forged = copy.deepcopy(signed)
    a, b = forged["sites"][0], forged["sites"][1]
    a["cert_sha256"], b["cert_sha256"] = b["cert_sha256"], a["cert_sha256"]
    with pytest.raises(IntegrityError):
        SignedRoster.from_dict(forged, ca_cert)


def test_a_roster_signed_by_another_ca_is_refused(signed, ca_cert):
    """A coordinator (or attacker) with its own CA re-signs an edited roster: not our CA."""
    other = CertificateAuthority.create("oncology", days=30)
    roster = SignedRoster.from_dict(signed, ca_cert)
    extra = RosterSite(
        name="site-z",
        public_key=SigningKey.generate().public_bytes(),
        exchange_key=KeyPair.generate().public_bytes(),
        cert_sha256="cd" * 32,
    )
    forged = SignedRoster.sign(
        other, federation="oncology", server=roster.server, sites=[*roster.sites, extra]
    )
    assert SignedRoster.from_dict(forged.to_dict(), other.cert).site_names[-1] == "site-z"
    with pytest.raises(IntegrityError):
        SignedRoster.from_dict(forged.to_dict(), ca_cert)


def test_a_signature_moved_to_another_roster_is_refused(signed, ca, ca_cert):
    """A signature over one roster does not vouch for any other (here: the server moved)."""
    roster = SignedRoster.from_dict(signed, ca_cert)
    moved = RosterServer(
        public_key=roster.server.public_key,
        cert_sha256=roster.server.cert_sha256,
        hosts=("evil.localhost",),
        port=roster.server.port,
    )
    other = SignedRoster.sign(ca, federation="oncology", server=moved, sites=roster.sites)
    forged = {**other.to_dict(), "signature": signed["signature"]}
    with pytest.raises(IntegrityError):
        SignedRoster.from_dict(forged, ca_cert)


def test_a_signature_by_the_ca_over_malformed_content_is_still_refused(signed, ca, ca_cert):
    """Signed but off-spec (a site twice): the shape checks hold even under a valid signature."""
    body = {k: v for k, v in signed.items() if k != "signature"}
    body["sites"] = [body["sites"][0], body["sites"][0]]
    sig = ca.key.sign(canonical_bytes(body), ec.ECDSA(hashes.SHA256())).hex()
    with pytest.raises(DataError):
        SignedRoster.from_dict({**body, "signature": sig}, ca_cert)


@pytest.mark.parametrize("field", ["signature", "issued_at", "server", "sites"])
def test_a_missing_field_is_refused(signed, ca_cert, field):
    forged = {k: v for k, v in signed.items() if k != field}
    _refused(forged, ca_cert)


def test_load_names_the_file_and_refuses_duplicate_keys(tmp_path: Path, signed, ca_cert):
    path = tmp_path / "roster.json"
    text = json.dumps(signed)
    path.write_text(text[:-1] + ', "federation": "other"}', encoding="utf-8")
    with pytest.raises(DataError, match=r"roster\.json"):
        SignedRoster.load(path, ca_cert)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _paths(v, (*prefix, k))]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _paths(v, (*prefix, i))]
    return [prefix]


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_property_any_change_to_any_signed_value_is_refused(signed, ca_cert, data):
    body = {k: v for k, v in signed.items() if k != "signature"}
    path = data.draw(st.sampled_from(_paths(body)))
    forged = copy.deepcopy(signed)
    target = forged
    for step in path[:-1]:
        target = target[step]
    old = target[path[-1]]
    if isinstance(old, str):
        new: Any = data.draw(st.text(max_size=70).filter(lambda s: s != old))
    else:
        new = data.draw(st.integers().filter(lambda i: i != old))
    target[path[-1]] = new
    _refused(forged, ca_cert)
