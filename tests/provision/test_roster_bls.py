"""The roster's BLS keys against a forging coordinator, a key thief and a rogue-key site.

The neighbourhood mask round checks one aggregate consistency signature
against the sum of the signers' roster BLS keys. Whoever could put a key of
its choosing on the roster could sign for others: a key copied from another
site counts that site's signature twice, and a rogue key pk_x − pk_a lets
its holder make an aggregate "signed by a and by itself" alone. Each roster
key therefore carries a proof of possession that the coordinator checks
before signing and every party checks when it loads the roster, and a
site's kit refuses a roster naming another BLS key than its identity derives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import blspy
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from securefl.errors import IntegrityError, SecureFLError
from securefl.hazmat import bls
from securefl.hazmat.sign import SigningKey
from securefl.provision.kit import Kit
from securefl.provision.pki import CertificateAuthority, load_private_key
from securefl.provision.roster import RosterSite, SignedRoster
from securefl.reports._canonical import canonical_bytes
from securefl.secagg import bls_entry

PARTIES = ("server", "site-a", "site-b", "site-c")


def _resign(federation: Path, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` signed by the federation's own CA key (what only the coordinator can do)."""
    key = load_private_key(federation / "kits" / "ca" / "ca.key.pem")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    body = {k: v for k, v in data.items() if k != "signature"}
    return {**body, "signature": key.sign(canonical_bytes(body), ec.ECDSA(hashes.SHA256())).hex()}


def _forge(federation: Path, edit: Any) -> None:
    """Edit the roster, have the CA sign it, and hand it to every kit."""
    data = json.loads((federation / "kits" / "server" / "roster.json").read_text())
    edit({s["name"]: s for s in data["sites"]})
    forged = json.dumps(_resign(federation, data))
    for party in PARTIES:
        (federation / "kits" / party / "roster.json").write_text(forged, encoding="utf-8")


def _rogue(victim: bytes) -> tuple[bytes, blspy.PrivateKey]:
    """A rogue key pk_x − pk_victim and the secret x its maker holds."""
    secret = blspy.PopSchemeMPL.key_gen(bytes(range(32)))
    rogue = secret.get_g1() + blspy.G1Element.from_bytes(victim).negate()
    return bytes(rogue), secret


def _sites(federation: Path) -> list[RosterSite]:
    return list(Kit.load(federation / "kits" / "server").roster.sites)


def test_every_site_gets_its_identitys_bls_key_and_a_valid_proof_on_the_roster(
    federation: Path,
) -> None:
    """Coordinator-made kits: the roster's BLS key is the one the site's identity derives."""
    for name in ("site-a", "site-b", "site-c"):
        kit = Kit.load(federation / "kits" / name)
        entry = kit.roster.site(name)
        assert entry.bls == bls_entry(kit.signing_key())
        assert entry.bls is not None
        bls.check_possession(*entry.bls)
    assert Kit.load(federation / "kits" / "server").roster.version == 4


def test_a_rogue_key_would_forge_an_aggregate_and_is_refused_everywhere(federation: Path) -> None:
    """site-b's key replaced by pk_x − pk_a, with the proof of x (no proof for it exists)."""
    sites = {s.name: s for s in _sites(federation)}
    assert sites["site-a"].bls_key is not None
    rogue, secret = _rogue(sites["site-a"].bls_key)
    message = b"survivor list"
    # the attack is real: x alone signs for "a and b" against the unchecked keys
    forged = bytes(blspy.PopSchemeMPL.sign(secret, message))
    bls.verify_aggregate([sites["site-a"].bls_key, rogue], message, forged)
    proof = bytes(blspy.PopSchemeMPL.pop_prove(secret))
    # the coordinator refuses to sign such a roster
    ca = CertificateAuthority.load(federation / "kits" / "ca")
    bad = RosterSite(
        name="site-b",
        public_key=sites["site-b"].public_key,
        exchange_key=sites["site-b"].exchange_key,
        cert_sha256=sites["site-b"].cert_sha256,
        bls_key=rogue,
        bls_proof=proof,
    )
    roster = Kit.load(federation / "kits" / "server").roster
    with pytest.raises(IntegrityError, match="proof of possession"):
        SignedRoster.sign(
            ca,
            federation=roster.federation,
            server=roster.server,
            sites=[sites["site-a"], bad, sites["site-c"]],
        )
    # and every party refuses it signed by the CA
    _forge(federation, lambda s: s["site-b"].update(bls_key=rogue.hex(), bls_proof=proof.hex()))
    for party in PARTIES:
        with pytest.raises(IntegrityError, match="proof of possession"):
            Kit.load(federation / "kits" / party)


def test_a_tampered_proof_is_refused_by_the_coordinator_and_every_party(federation: Path) -> None:
    sites = {s.name: s for s in _sites(federation)}
    other_proof = bls_entry(SigningKey.generate())[1]  # a valid proof, of another key
    ca = CertificateAuthority.load(federation / "kits" / "ca")
    roster = Kit.load(federation / "kits" / "server").roster
    from dataclasses import replace

    with pytest.raises(IntegrityError, match="proof of possession"):
        SignedRoster.sign(
            ca,
            federation=roster.federation,
            server=roster.server,
            sites=[
                sites["site-a"],
                replace(sites["site-b"], bls_proof=other_proof),
                sites["site-c"],
            ],
        )
    _forge(federation, lambda s: s["site-c"].update(bls_proof=other_proof.hex()))
    for party in PARTIES:
        with pytest.raises(IntegrityError, match="proof of possession"):
            Kit.load(federation / "kits" / party)


def test_a_key_copied_from_another_site_is_refused_by_the_coordinator_and_every_party(
    federation: Path,
) -> None:
    """site-b carries site-a's key and its (valid) proof: a's one signature would count twice."""
    sites = {s.name: s for s in _sites(federation)}
    ca = CertificateAuthority.load(federation / "kits" / "ca")
    roster = Kit.load(federation / "kits" / "server").roster
    from dataclasses import replace

    copied = replace(
        sites["site-b"], bls_key=sites["site-a"].bls_key, bls_proof=sites["site-a"].bls_proof
    )
    with pytest.raises(IntegrityError, match="share one BLS key"):
        SignedRoster.sign(
            ca,
            federation=roster.federation,
            server=roster.server,
            sites=[sites["site-a"], copied, sites["site-c"]],
        )

    def copy(s: dict[str, Any]) -> None:
        s["site-b"].update(bls_key=s["site-a"]["bls_key"], bls_proof=s["site-a"]["bls_proof"])

    _forge(federation, copy)
    for party in PARTIES:
        with pytest.raises(IntegrityError, match="share one BLS key"):
            Kit.load(federation / "kits" / party)


def test_a_site_refuses_a_roster_naming_another_bls_key_than_its_identity_derives(
    federation: Path,
) -> None:
    """The coordinator swaps the BLS entries of a and b: each proof valid, all keys distinct.

    Only the sites can tell (their BLS key is derived from their identity
    seed); a and b refuse the kit, c and the server cannot see a difference.
    """

    def swap(s: dict[str, Any]) -> None:
        a, b = s["site-a"], s["site-b"]
        (a["bls_key"], a["bls_proof"]), (b["bls_key"], b["bls_proof"]) = (
            (b["bls_key"], b["bls_proof"]),
            (a["bls_key"], a["bls_proof"]),
        )

    _forge(federation, swap)
    for name in ("site-a", "site-b"):
        with pytest.raises(SecureFLError, match="BLS key"):
            Kit.load(federation / "kits" / name)
    Kit.load(federation / "kits" / "site-c")
    Kit.load(federation / "kits" / "server")


def test_renewing_a_federation_of_an_older_securefl_keeps_its_rosters_loadable(
    federation: Path,
) -> None:
    """A version 3 roster (no BLS keys) re-signed by `renew` becomes version 4 without them:
    every kit loads, and the neighbourhood round is still refused until re-provisioning."""
    from securefl.errors import ConfigError
    from securefl.provision import renew

    data = json.loads((federation / "kits" / "ca" / "roster.json").read_text())
    data["version"] = 3
    for site in data["sites"]:
        del site["bls_key"], site["bls_proof"]
    old = json.dumps(_resign(federation, data))
    for folder in ("ca", *PARTIES):
        (federation / "kits" / folder / "roster.json").write_text(old, encoding="utf-8")
    result = renew(federation / "fed.toml", federation / "kits")
    assert result.roster.version == 4 and all(s.bls is None for s in result.roster.sites)
    for party in PARTIES:
        assert Kit.load(federation / "kits" / party).roster.version == 4
    with pytest.raises(ConfigError, match="re-provision"):
        result.roster.bls_roster()
