"""The signed roster against vectors computed without securefl (generate_provision.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509

from securefl.errors import SecureFLError
from securefl.provision.roster import SignedRoster
from securefl.reports._canonical import canonical_bytes

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "provision_roster.json").read_text()
)
CA_CERT = x509.load_pem_x509_certificate(VECTORS["ca_cert_pem"].encode("ascii"))


def test_the_known_roster_verifies_and_reencodes_to_the_same_bytes():
    valid = VECTORS["valid"]
    roster = SignedRoster.from_dict(valid["roster"], CA_CERT)
    assert roster.site_names == ("site-a", "site-b", "site-c")
    assert roster.to_dict() == valid["roster"]
    body = {k: v for k, v in roster.to_dict().items() if k != "signature"}
    assert canonical_bytes(body).decode("ascii") == valid["canonical_body"]


@pytest.mark.parametrize("name", sorted(VECTORS["must_fail"]))
def test_every_must_fail_roster_is_refused(name):
    with pytest.raises(SecureFLError):
        SignedRoster.from_dict(VECTORS["must_fail"][name], CA_CERT)
