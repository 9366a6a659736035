"""The coordinator's operations: re-provisioning, site requests, revocation, renewal."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from securefl.cli import cli
from securefl.errors import ConfigError, IntegrityError
from securefl.provision import Kit, SiteRequest, make_site_request, provision, renew, revoke
from securefl.provision.pki import cert_sha256, load_cert, load_crl, revoked_serials


def _ca_fingerprint(root: Path) -> str:
    return cert_sha256(load_cert(root / "kits" / "ca" / "ca.cert.pem"))


def test_reprovisioning_refuses_unless_forced(federation: Path):
    before = _ca_fingerprint(federation)
    key_before = (federation / "kits" / "ca" / "ca.key.pem").read_bytes()
    with pytest.raises(ConfigError, match="--force"):
        provision(federation / "fed.toml", federation / "kits")
    assert _ca_fingerprint(federation) == before
    assert (federation / "kits" / "ca" / "ca.key.pem").read_bytes() == key_before
    provision(federation / "fed.toml", federation / "kits", force=True)
    assert _ca_fingerprint(federation) != before
    Kit.load(federation / "kits" / "site-a")


def test_a_folder_with_only_kits_is_not_silently_replaced(federation: Path, tmp_path: Path):
    out = tmp_path / "kits-only"
    (out / "site-a").mkdir(parents=True)
    (out / "site-a" / "kit.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match="refusing"):
        provision(federation / "fed.toml", out)


def test_the_request_flow_keeps_the_private_keys_at_the_site(federation: Path, tmp_path: Path):
    """The coordinator never sees the site's private keys: scan everything it holds."""
    home = tmp_path / "site-b-home"
    req_path = make_site_request("site-b", home)
    privates = [
        (home / n).read_bytes() for n in ("tls.key.pem", "identity.key.pem", "exchange.key.pem")
    ]
    for name in ("tls.key.pem", "identity.key.pem", "exchange.key.pem"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600
    request_text = req_path.read_bytes()
    assert b"PRIVATE" not in request_text
    old_fingerprint = cert_sha256(load_cert(federation / "kits" / "site-b" / "tls.cert.pem"))

    result = provision(
        federation / "fed.toml", federation / "kits", requests=[SiteRequest.load(req_path)]
    )
    assert set(result.kits) == {"site-b"}
    # nothing the coordinator holds contains the site's keys, in PEM or raw form
    raws = []
    for name in ("identity.key.pem", "exchange.key.pem"):
        from securefl.provision.pki import load_private_key

        key = load_private_key(home / name)
        raws.append(
            key.private_bytes(  # type: ignore[union-attr]
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        )
    for path in (federation / "kits").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(p.strip() in data for p in privates), path
            assert not any(r in data for r in raws), path
    public_part = federation / "kits" / "site-b"
    assert not any((public_part / n).exists() for n in ("tls.key.pem", "identity.key.pem"))
    assert "holds no private key" in " ".join((public_part / "README.md").read_text().split())
    # the site completes its kit with the public part and it loads
    for path in public_part.iterdir():
        (home / path.name).write_bytes(path.read_bytes())
    kit = Kit.load(home)
    assert kit.party == "site-b"
    assert kit.roster.identity_keys()["site-b"] == SiteRequest.load(req_path).identity_key
    # the site's old (coordinator-made) certificate is revoked, every other kit has the roster
    crl = load_crl(federation / "kits" / "server" / "crl.pem", load_cert(home / "ca.cert.pem"))
    issued = json.loads((federation / "kits" / "ca" / "issued.json").read_text())
    old = [e for e in issued["certificates"] if e["sha256"] == old_fingerprint]
    assert int(old[0]["serial"]) in revoked_serials(crl)
    assert Kit.load(federation / "kits" / "site-a").roster.to_dict() == kit.roster.to_dict()


def test_a_request_signed_by_another_identity_key_is_refused(tmp_path: Path):
    """Someone relays a site's request but swaps in an identity key of its own."""
    path = make_site_request("site-b", tmp_path / "home")
    data = json.loads(path.read_text())
    from securefl.hazmat.sign import SigningKey

    data["identity_key"] = SigningKey.generate().public_bytes().hex()
    path.write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match=r"site-b\.req: .*not signed by its identity key"):
        SiteRequest.load(path)


def test_a_request_for_a_site_not_in_the_file_is_refused(federation: Path, tmp_path: Path):
    path = make_site_request("site-z", tmp_path / "home")
    with pytest.raises(ConfigError, match="site-z"):
        provision(federation / "fed.toml", federation / "kits", requests=[SiteRequest.load(path)])


def test_request_refuses_to_replace_keys(tmp_path: Path):
    make_site_request("site-a", tmp_path / "home")
    with pytest.raises(ConfigError, match="--force"):
        make_site_request("site-a", tmp_path / "home")


def test_revocation_lands_in_the_crl_of_ca_and_server(federation: Path):
    kits = federation / "kits"
    serial = load_cert(kits / "site-c" / "tls.cert.pem").serial_number
    ca_cert = load_cert(kits / "ca" / "ca.cert.pem")
    assert serial not in revoked_serials(load_crl(kits / "server" / "crl.pem", ca_cert))
    assert revoke(federation / "fed.toml", "site-c", kits) == [serial]
    for folder in ("ca", "server"):
        assert serial in revoked_serials(load_crl(kits / folder / "crl.pem", ca_cert))
    other = load_cert(kits / "site-a" / "tls.cert.pem").serial_number
    assert other not in revoked_serials(load_crl(kits / "server" / "crl.pem", ca_cert))
    with pytest.raises(ConfigError, match="nothing to revoke"):
        revoke(federation / "fed.toml", "site-c", kits)
    with pytest.raises(ConfigError, match="site-q"):
        revoke(federation / "fed.toml", "site-q", kits)


def test_renew_issues_fresh_certificates_for_the_same_keys_and_a_new_roster(federation: Path):
    kits = federation / "kits"
    revoke(federation / "fed.toml", "site-c", kits)
    before = {p: load_cert(kits / p / "tls.cert.pem") for p in ("server", "site-a", "site-c")}
    roster_before = json.loads((kits / "site-a" / "roster.json").read_text())
    result = renew(federation / "fed.toml", kits)
    assert set(result.kits) == {"server", "site-a", "site-b"}  # a revoked site is not renewed
    for party in ("server", "site-a"):
        new = load_cert(kits / party / "tls.cert.pem")
        assert new.serial_number != before[party].serial_number
        assert new.public_key() == before[party].public_key()
        assert new.not_valid_before_utc >= before[party].not_valid_before_utc
        assert result.roster.cert_sha256(party) == cert_sha256(new)
        Kit.load(kits / party)
    assert load_cert(kits / "site-c" / "tls.cert.pem") == before["site-c"]
    assert roster_before["signature"] != result.roster.to_dict()["signature"]
    with pytest.raises(ConfigError, match="revoked"):
        renew(federation / "fed.toml", kits, parties=["site-c"])


def test_operations_refuse_another_federation_file(federation: Path):
    other = federation / "other.toml"
    other.write_text(
        (federation / "fed.toml").read_text().replace("port = 8443", "port = 9443"),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="differs"):
        revoke(other, "site-a", federation / "kits")


def test_the_cli_provisions_requests_and_revokes(tmp_path: Path, provisioned: Path):
    runner = CliRunner()
    fed = provisioned / "fed.toml"
    out = tmp_path / "kits"
    result = runner.invoke(cli, ["provision", str(fed), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert Kit.load(out / "site-a").party == "site-a"
    again = runner.invoke(cli, ["provision", str(fed), "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    req = runner.invoke(
        cli, ["provision", "request", "--site", "site-a", "--out", str(tmp_path / "h")]
    )
    assert req.exit_code == 0, req.output
    signed = runner.invoke(
        cli,
        ["provision", str(fed), "--request", str(tmp_path / "h" / "site-a.req"), "--out", str(out)],
    )
    assert signed.exit_code == 0, signed.output
    revoked = runner.invoke(cli, ["provision", "revoke", str(fed), "site-b", "--out", str(out)])
    assert revoked.exit_code == 0, revoked.output
    renewed = runner.invoke(cli, ["provision", "renew", str(fed), "--out", str(out)])
    assert renewed.exit_code == 0 and "site-b" not in renewed.output


def test_a_model_factory_builds_the_initial_model_under_the_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import numpy as np

    (tmp_path / "my_models.py").write_text(
        "import torch\n"
        "def mlp():\n"
        "    nn = torch.nn\n"
        "    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    text = (
        '[federation]\nsecure = "plain"\n[model]\nfactory = "my_models:mlp"\nseed = 3\n'
        "[rounds]\nmax_weight = 100\n"
        '[[sites]]\nname = "a"\n[[sites]]\nname = "b"\n'
    )
    (tmp_path / "fed.toml").write_text(text, encoding="utf-8")
    first = provision(tmp_path / "fed.toml", tmp_path / "one").kits["a"]
    second = provision(tmp_path / "fed.toml", tmp_path / "two").kits["a"]
    kit = Kit.load(first)
    assert kit.spec.names == ("0.weight", "0.bias", "2.weight", "2.bias")
    assert kit.spec.size == 4 * 8 + 8 + 8 * 2 + 2
    np.testing.assert_array_equal(kit.initial_params(), Kit.load(second).initial_params())
    (tmp_path / "bad.toml").write_text(text.replace("my_models:mlp", "my_models:nope"))
    with pytest.raises(ConfigError, match=r"model\.factory"):
        provision(tmp_path / "bad.toml", tmp_path / "three")


@pytest.mark.parametrize(
    "head, sites, needle",
    [
        ('secure = "plain"', 1, "min_sites"),
        ('secure = "he"', 2, "he mode"),
        ('secure = "mask"', 2, "mask mode"),
        ('secure = "plain"', 3, "max_weight"),  # every party pins it: a kit must carry it
    ],
)
def test_a_federation_that_can_never_run_gets_no_kits(tmp_path: Path, head, sites, needle):
    text = f"[federation]\n{head}\n" + "".join(f'[[sites]]\nname = "s{i}"\n' for i in range(sites))
    (tmp_path / "fed.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=needle):
        provision(tmp_path / "fed.toml", tmp_path / "kits")
    assert not (tmp_path / "kits").exists()


def test_the_he_minimum_matches_the_he_package():
    from securefl.he import MIN_SUMMANDS
    from securefl.provision.coordinator import _HE_MIN_SUMMANDS

    assert _HE_MIN_SUMMANDS == MIN_SUMMANDS
