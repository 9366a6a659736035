"""The signed roster against vectors computed without securefl (generate_provision.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509

from securefl.errors import ConfigError, SecureFLError
from securefl.provision.roster import SignedRoster
from securefl.reports._canonical import canonical_bytes

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "provision_roster.json").read_text()
)
CA_CERT = x509.load_pem_x509_certificate(VECTORS["ca_cert_pem"].encode("ascii"))


@pytest.mark.parametrize("which", ["valid", "valid_version_3"])
def test_the_known_roster_verifies_and_reencodes_to_the_same_bytes(which: str) -> None:
    valid = VECTORS[which]
    roster = SignedRoster.from_dict(valid["roster"], CA_CERT)
    assert roster.site_names == ("site-a", "site-b", "site-c")
    assert roster.to_dict() == valid["roster"]
    body = {k: v for k, v in roster.to_dict().items() if k != "signature"}
    assert canonical_bytes(body).decode("ascii") == valid["canonical_body"]


def test_the_known_roster_gives_each_sites_bls_key_and_proof() -> None:
    roster = SignedRoster.from_dict(VECTORS["valid"]["roster"], CA_CERT)
    entries = {s["name"]: s for s in VECTORS["valid"]["roster"]["sites"]}
    assert roster.bls_roster() == {
        name: (bytes.fromhex(e["bls_key"]), bytes.fromhex(e["bls_proof"]))
        for name, e in entries.items()
    }


def test_the_version_3_roster_loads_but_gives_no_bls_roster() -> None:
    roster = SignedRoster.from_dict(VECTORS["valid_version_3"]["roster"], CA_CERT)
    assert roster.version == 3 and all(s.bls is None for s in roster.sites)
    with pytest.raises(ConfigError, match="re-provision"):
        roster.bls_roster()


@pytest.mark.parametrize("name", sorted(VECTORS["must_fail"]))
def test_every_must_fail_roster_is_refused(name):
    with pytest.raises(SecureFLError):
        SignedRoster.from_dict(VECTORS["must_fail"][name], CA_CERT)
