"""Adversarial review of kits and the signed roster: downgrades and files others may change."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from securefl.errors import ConfigError, DataError, SecureFLError
from securefl.provision.kit import Kit
from securefl.provision.pki import load_cert, load_private_key
from securefl.provision.roster import SignedRoster
from securefl.reports._canonical import canonical_bytes


def _resign(federation: Path, data: dict[str, object]) -> dict[str, object]:
    """``data`` signed by the federation's own CA key (what only the coordinator can do)."""
    key = load_private_key(federation / "kits" / "ca" / "ca.key.pem")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    body = {k: v for k, v in data.items() if k != "signature"}
    sig = key.sign(canonical_bytes(body), ec.ECDSA(hashes.SHA256()))
    return {**body, "signature": sig.hex()}


@pytest.mark.parametrize("version", [2, 1, 3, 5, "4", True])
def test_a_ca_signed_roster_of_another_version_is_refused(federation: Path, version: object):
    """A downgrade: the CA's signature holds, but only versions 3 and 4 are signed rosters,
    and version 3 has no BLS fields (relabelling a version 4 roster 3 is refused)."""
    kit = federation / "kits" / "site-a"
    path = kit / "roster.json"
    data = json.loads(path.read_text())
    honest = _resign(federation, data)
    SignedRoster.from_dict(honest, load_cert(kit / "ca.cert.pem"))  # the re-signing is sound
    data["version"] = version
    path.write_text(json.dumps(_resign(federation, data)))
    with pytest.raises(DataError, match="version"):
        SignedRoster.load(path, load_cert(kit / "ca.cert.pem"))
    with pytest.raises(SecureFLError):
        Kit.load(kit)


@pytest.mark.parametrize("target", [".", "ca.cert.pem", "roster.json", "kit.json"])
def test_a_kit_others_can_write_to_is_refused(federation: Path, target: str):
    """Whoever can replace the CA certificate and the roster decides whom the party trusts."""
    kit = federation / "kits" / "site-a"
    Kit.load(kit)
    path = kit / target
    os.chmod(path, os.stat(path).st_mode | 0o002)
    with pytest.raises(ConfigError, match="writable by other users"):
        Kit.load(kit)
