"""Kits: what each holds, owner-only private keys, no CA key anywhere, torch-free loading."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from securefl.errors import ConfigError, IntegrityError
from securefl.provision import Kit
from securefl.provision.kit import KIT_FILES, PRIVATE_FILES
from securefl.provision.pki import load_private_key, write_private_key

ROOT = Path(__file__).resolve().parents[2]
PARTIES = ("server", "site-a", "site-b", "site-c")


def test_every_kit_holds_its_files_and_loads(provisioned: Path):
    for party in PARTIES:
        folder = provisioned / "kits" / party
        kit = Kit.load(folder)
        assert kit.party == party and kit.kind == ("server" if party == "server" else "site")
        for name in (*KIT_FILES[kit.kind], "README.md"):
            assert (folder / name).is_file(), (party, name)
        assert kit.server_url == "https://coordinator.localhost:8443"
        assert kit.server_name == "coordinator.localhost"
        assert kit.federation.name == kit.roster.federation == "oncology"
        meta = json.loads((folder / "kit.json").read_text())
        assert meta == {
            "version": 1,
            "kind": kit.kind,
            "party": party,
            "federation": "oncology",
            "server_url": "https://coordinator.localhost:8443",
            "server_name": "coordinator.localhost",
        }


def test_private_keys_are_owner_only(provisioned: Path):
    checked = 0
    for party in (*PARTIES, "ca"):
        for name in (*PRIVATE_FILES, "ca.key.pem"):
            path = provisioned / "kits" / party / name
            if path.exists():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
                checked += 1
    assert checked == 3 + 3 * 3 + 1  # server: tls, identity, token; sites: three keys; the CA


def test_no_kit_contains_the_ca_private_key(provisioned: Path):
    """Scan every byte of every kit for the CA key in any encoding we know of."""
    ca_key = load_private_key(provisioned / "kits" / "ca" / "ca.key.pem")
    from cryptography.hazmat.primitives.asymmetric import ec

    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    scalar = ca_key.private_numbers().private_value.to_bytes(32, "big")
    needles = [
        (provisioned / "kits" / "ca" / "ca.key.pem").read_bytes().strip(),
        ca_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        scalar,
        scalar.hex().encode(),
    ]
    scanned = 0
    for party in PARTIES:
        for path in (provisioned / "kits" / party).rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                scanned += 1
                assert not any(n in data for n in needles), path
    assert scanned >= 40


def test_each_kit_holds_only_its_own_private_keys(provisioned: Path):
    secrets_by_party = {
        party: [
            (provisioned / "kits" / party / n).read_bytes()
            for n in PRIVATE_FILES
            if (provisioned / "kits" / party / n).exists()
        ]
        for party in PARTIES
    }
    for party in PARTIES:
        for other, secrets in secrets_by_party.items():
            if other == party:
                continue
            for path in (provisioned / "kits" / party).iterdir():
                data = path.read_bytes()
                assert not any(s.strip() in data for s in secrets), (party, other, path.name)


def test_readme_says_what_the_kit_is_and_what_to_run(provisioned: Path):
    server = (provisioned / "kits" / "server" / "README.md").read_text()
    assert "securefl server --kit" in server and "oncology" in server
    site = (provisioned / "kits" / "site-b" / "README.md").read_text()
    assert "securefl client --kit" in site and "site-b" in site


def test_initial_model_is_the_one_simulate_starts_from(provisioned: Path):
    from securefl.params import model_vector
    from securefl.simulation.orchestrator import _seeded_model

    kit = Kit.load(provisioned / "kits" / "server")
    expected = model_vector(_seeded_model(30, 2, 0))
    assert kit.spec.size == expected.size
    np.testing.assert_array_equal(kit.initial_params(), expected)
    site = Kit.load(provisioned / "kits" / "site-a")
    np.testing.assert_array_equal(site.initial_params(), expected)


def test_kit_keys_match_the_roster(provisioned: Path):
    kit = Kit.load(provisioned / "kits" / "site-a")
    assert kit.signing_key().public_bytes() == kit.roster.identity_keys()["site-a"]
    assert kit.exchange_key().public_bytes() == kit.roster.exchange_keys()["site-a"]
    server = Kit.load(provisioned / "kits" / "server")
    assert server.signing_key().public_bytes() == kit.roster.identity_keys()["server"]
    assert len(server.status_token()) >= 40
    with pytest.raises(ConfigError):
        server.exchange_key()


def test_a_key_readable_by_others_is_refused(federation: Path):
    key = federation / "kits" / "site-a" / "identity.key.pem"
    os.chmod(key, 0o644)
    with pytest.raises(ConfigError, match=r"identity\.key\.pem"):
        Kit.load(federation / "kits" / "site-a")


def test_a_kit_whose_identity_key_is_not_on_the_roster_is_refused(federation: Path):
    write_private_key(
        federation / "kits" / "site-a" / "identity.key.pem", Ed25519PrivateKey.generate()
    )
    with pytest.raises(ConfigError, match=r"identity\.key\.pem"):
        Kit.load(federation / "kits" / "site-a")


def test_a_kit_with_another_sites_certificate_is_refused(federation: Path):
    kits = federation / "kits"
    (kits / "site-a" / "tls.cert.pem").write_bytes((kits / "site-b" / "tls.cert.pem").read_bytes())
    with pytest.raises(ConfigError, match=r"tls\.cert\.pem"):
        Kit.load(kits / "site-a")


def test_a_kit_whose_roster_is_edited_is_refused(federation: Path):
    path = federation / "kits" / "site-a" / "roster.json"
    data = json.loads(path.read_text())
    data["sites"] = data["sites"][:2]
    path.write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="site-a"):
        Kit.load(federation / "kits" / "site-a")


def test_missing_files_name_the_kit_and_the_file(federation: Path):
    (federation / "kits" / "site-c" / "ca.cert.pem").unlink()
    with pytest.raises(ConfigError, match=r"site-c.*ca\.cert\.pem"):
        Kit.load(federation / "kits" / "site-c")
    with pytest.raises(ConfigError, match=r"kit\.json"):
        Kit.load(federation / "kits" / "ca")


def _run_isolated(code: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


_UPSTREAM = (
    "import json, sys\n"
    "import securefl.config, securefl.reports.roster, securefl.params\n"
    "if 'torch' in sys.modules: print(json.dumps(['upstream imports torch'])); sys.exit()\n"
)


def test_kit_loading_never_imports_torch(provisioned: Path):
    """A coordinator machine has no GPU stack: loading its kit (model included) needs no torch.

    Skipped where the modules a kit builds on (config, reports, params) still import torch
    themselves: then the claim cannot be checked here.
    """
    code = _UPSTREAM + (
        "from securefl.provision import Kit\n"
        f"k = Kit.load({str(provisioned / 'kits' / 'server')!r})\n"
        "k.signing_key(); k.roster.audit_roster(); k.status_token()\n"
        f"s = Kit.load({str(provisioned / 'kits' / 'site-a')!r}); s.exchange_key()\n"
        "k.spec; k.initial_params()\n"
        "print(json.dumps(sorted(m for m in ('torch', 'opacus', 'tenseal') if m in sys.modules)))\n"
    )
    result = _run_isolated(code)
    if result == ["upstream imports torch"]:
        pytest.skip("securefl.reports or securefl.params import torch on this branch")
    assert result == []


def test_a_kit_with_a_certificate_the_roster_does_not_pin_is_refused(federation: Path):
    """Same key, same CA name, another CA: only the pinned fingerprint tells them apart."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from securefl.provision.pki import CertificateAuthority, issue_site_cert

    folder = federation / "kits" / "site-a"
    key = load_private_key(folder / "tls.key.pem")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    impostor = CertificateAuthority.create("oncology", days=30)
    cert = issue_site_cert(impostor, key.public_key(), site="site-a", days=30)
    (folder / "tls.cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ConfigError, match="roster pins"):
        Kit.load(folder)
