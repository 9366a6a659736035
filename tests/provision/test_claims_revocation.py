"""Revocation reaches every certificate a site was ever issued, not only the first or the last.

A renewed site holds two valid certificates of the federation CA (the old
one is no longer pinned but has not expired). Revoking the site must put
both in the CRL: a revocation that stopped at one of them would leave the
other usable by whoever holds the site's TLS key.
"""

from __future__ import annotations

from pathlib import Path

from securefl.provision import renew, revoke
from securefl.provision.pki import load_cert, load_crl, revoked_serials


def test_revoking_a_renewed_site_revokes_its_old_and_its_new_certificate(federation: Path):
    kits = federation / "kits"
    old = load_cert(kits / "site-c" / "tls.cert.pem").serial_number
    renew(federation / "fed.toml", kits, parties=["site-c"])
    new = load_cert(kits / "site-c" / "tls.cert.pem").serial_number
    assert new != old
    others = {
        load_cert(kits / party / "tls.cert.pem").serial_number
        for party in ("server", "site-a", "site-b")
    }

    assert sorted(revoke(federation / "fed.toml", "site-c", kits)) == sorted([old, new])
    ca_cert = load_cert(kits / "ca" / "ca.cert.pem")
    for folder in ("ca", "server"):
        revoked = revoked_serials(load_crl(kits / folder / "crl.pem", ca_cert))
        assert {old, new} <= revoked, folder
        assert not others & revoked, folder
