"""The signed roster's BLS keys, attacked by whoever hands out rosters.

The neighbourhood mask round counts consistency signers by the sum of their
roster BLS keys, so a roster entry whose key the site does not hold, whose
proof was made for another key or under the wrong domain, or a roster of an
older version mixed into a newer one, must never reach a round. Each test
builds the roster a hostile party would hand out, signed by the real CA
where the attack needs it, and checks every reader refuses it (or the
neighbourhood round refuses to start on it, in one line).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from securefl.errors import ConfigError, DataError, IntegrityError
from securefl.hazmat import bls
from securefl.hazmat.sign import SigningKey
from securefl.provision import SiteRequest, make_site_request
from securefl.provision.pki import CertificateAuthority, load_private_key
from securefl.provision.roster import RosterServer, RosterSite, SignedRoster
from securefl.reports._canonical import canonical_bytes
from securefl.secagg import MaskConfig, MaskSiteMode, bls_entry
from securefl.secagg import _messages as m

NAMES = ("site-a", "site-b", "site-c", "site-d")
LOCAL = MaskConfig(
    clip=1.0, complete_graph_max=3, dropout_rate=0.05, corrupt_rate=0.0, neighbourhood=True
)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("fed", days=30)


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {n: SigningKey.generate() for n in NAMES}


def _server() -> RosterServer:
    return RosterServer(
        public_key=os.urandom(32), cert_sha256=os.urandom(32).hex(), hosts=("h",), port=1
    )


def _sites(keys: dict[str, SigningKey], **override: tuple[bytes, bytes] | None) -> list[RosterSite]:
    out = []
    for name, key in keys.items():
        entry = override[name] if name in override else bls_entry(key)
        out.append(
            RosterSite(
                name=name,
                public_key=key.public_bytes(),
                exchange_key=os.urandom(32),
                cert_sha256=os.urandom(32).hex(),
                bls_key=None if entry is None else entry[0],
                bls_proof=None if entry is None else entry[1],
            )
        )
    return out


def _resign(ca: CertificateAuthority, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` signed by the CA (what only the coordinator can do)."""
    body = {k: v for k, v in data.items() if k != "signature"}
    return {
        **body,
        "signature": ca.key.sign(canonical_bytes(body), ec.ECDSA(hashes.SHA256())).hex(),
    }


def _signed(ca: CertificateAuthority, keys: dict[str, SigningKey]) -> dict[str, Any]:
    return SignedRoster.sign(ca, federation="fed", server=_server(), sites=_sites(keys)).to_dict()


def test_the_honest_roster_loads_with_every_bls_key(
    ca: CertificateAuthority, keys: dict[str, SigningKey]
) -> None:
    roster = SignedRoster.from_dict(_signed(ca, keys), ca.cert)
    assert roster.bls_roster() == {n: bls_entry(k) for n, k in keys.items()}


def test_a_proof_made_for_another_key_is_refused_by_the_signer_and_every_reader(
    ca: CertificateAuthority, keys: dict[str, SigningKey]
) -> None:
    """site-a's key with site-b's (valid, public) proof: the proof proves site-b's key."""
    a, b = bls_entry(keys["site-a"]), bls_entry(keys["site-b"])
    with pytest.raises(IntegrityError, match="proof of possession"):
        SignedRoster.sign(
            ca, federation="fed", server=_server(), sites=_sites(keys, **{"site-a": (a[0], b[1])})
        )
    data = _signed(ca, keys)
    data["sites"][0]["bls_proof"] = b[1].hex()
    with pytest.raises(IntegrityError, match="proof of possession"):
        SignedRoster.from_dict(_resign(ca, data), ca.cert)


def test_a_signature_under_the_signing_domain_is_no_proof_of_possession(
    ca: CertificateAuthority, keys: dict[str, SigningKey]
) -> None:
    """The key's own signature over its own public key bytes, and over a neighbourhood list,
    in the signing domain: valid BLS signatures by the key, but not proofs."""
    own = bls.BlsKey.from_identity(keys["site-a"])
    listed = m.neighbourhood_list_message("fed", 1, NAMES, run="", round_digest=bytes(32))
    for message in (own.public_bytes(), listed):
        fake = own.sign(message)
        bls.verify_one(own.public_bytes(), message, fake)  # a real signature by the key
        data = _signed(ca, keys)
        data["sites"][0]["bls_proof"] = fake.hex()
        with pytest.raises(IntegrityError, match="proof of possession"):
            SignedRoster.from_dict(_resign(ca, data), ca.cert)


def test_a_version_3_roster_loads_but_the_neighbourhood_round_refuses_it(
    tmp_path: Path, ca: CertificateAuthority, keys: dict[str, SigningKey]
) -> None:
    data = _signed(ca, keys)
    data["version"] = 3
    for site in data["sites"]:
        del site["bls_key"], site["bls_proof"]
    roster = SignedRoster.from_dict(_resign(ca, data), ca.cert)
    assert roster.version == 3 and all(s.bls is None for s in roster.sites)
    with pytest.raises(ConfigError, match="no BLS key"):
        roster.bls_roster()
    with pytest.raises(ConfigError, match="BLS key"):
        MaskSiteMode(
            site_id="site-a",
            signing_key=keys["site-a"],
            roster=roster.identity_keys(),
            state_path=tmp_path / "a.json",
            config=LOCAL,
            bls_roster=None,
        )


def test_bls_fields_in_a_version_3_roster_are_refused_even_signed_by_the_ca(
    ca: CertificateAuthority, keys: dict[str, SigningKey]
) -> None:
    data = _signed(ca, keys)
    data["version"] = 3
    with pytest.raises(DataError, match="version 3"):
        SignedRoster.from_dict(_resign(ca, data), ca.cert)


def test_a_version_4_roster_relabelled_3_without_the_ca_is_refused(
    ca: CertificateAuthority, keys: dict[str, SigningKey]
) -> None:
    """Downgrading (dropping a site's BLS fields, or the version) breaks the CA signature."""
    data = _signed(ca, keys)
    stripped = {**data, "sites": [dict(s) for s in data["sites"]]}
    del stripped["sites"][1]["bls_key"], stripped["sites"][1]["bls_proof"]
    for forged in ({**data, "version": 3}, stripped):
        with pytest.raises(IntegrityError):
            SignedRoster.from_dict(forged, ca.cert)


def test_a_mixed_roster_refuses_the_neighbourhood_round_naming_the_older_site(
    tmp_path: Path, ca: CertificateAuthority, keys: dict[str, SigningKey]
) -> None:
    """A renewed version 4 roster whose site-c was provisioned before BLS keys."""
    roster = SignedRoster.sign(
        ca, federation="fed", server=_server(), sites=_sites(keys, **{"site-c": None})
    )
    loaded = SignedRoster.from_dict(roster.to_dict(), ca.cert)
    with pytest.raises(ConfigError, match="site-c") as info:
        loaded.bls_roster()
    assert "site-a" not in str(info.value)
    partial = {n: bls_entry(k) for n, k in keys.items() if n != "site-c"}
    with pytest.raises(ConfigError, match="site-c"):
        MaskSiteMode(
            site_id="site-a",
            signing_key=keys["site-a"],
            roster={n: k.public_bytes() for n, k in keys.items()},
            state_path=tmp_path / "a.json",
            config=LOCAL,
            bls_roster=partial,
        )


def test_a_half_bls_entry_is_refused(ca: CertificateAuthority, keys: dict[str, SigningKey]) -> None:
    data = _signed(ca, keys)
    del data["sites"][2]["bls_proof"]
    with pytest.raises(DataError):
        SignedRoster.from_dict(_resign(ca, data), ca.cert)
    with pytest.raises(DataError, match="proof of possession"):
        RosterSite(
            name="x",
            public_key=bytes(32),
            exchange_key=bytes(32),
            cert_sha256="00" * 32,
            bls_key=bytes(48),
            bls_proof=None,
        )


def test_two_sites_swapping_their_bls_entries_load_but_each_site_refuses_to_run(
    tmp_path: Path, ca: CertificateAuthority, keys: dict[str, SigningKey]
) -> None:
    """Every proof is valid, so readers load it; the swap is caught by the sites themselves
    (their identity derives another key), which refuse to start."""
    swapped = _sites(
        keys, **{"site-a": bls_entry(keys["site-b"]), "site-b": bls_entry(keys["site-a"])}
    )
    roster = SignedRoster.from_dict(
        SignedRoster.sign(ca, federation="fed", server=_server(), sites=swapped).to_dict(),
        ca.cert,
    )
    for name in ("site-a", "site-b"):
        with pytest.raises(ConfigError, match="does not match its identity"):
            MaskSiteMode(
                site_id=name,
                signing_key=keys[name],
                roster={n: k.public_bytes() for n, k in keys.items()},
                state_path=tmp_path / "a.json",
                config=LOCAL,
                bls_roster=roster.bls_roster(),
            )


def test_a_requests_bls_signature_and_a_consistency_signature_do_not_stand_for_each_other(
    tmp_path: Path,
) -> None:
    """The BLS key signs its site's provisioning request and, later, neighbourhood lists,
    under one signing domain of the scheme: the message labels keep them apart. A relay
    holding a site's consistency signature cannot complete a request with it, and a
    server holding the request's signature cannot count it as a consistency vote."""
    home = tmp_path / "home"
    path = make_site_request("site-a", home)
    data = json.loads(path.read_text())
    SiteRequest.load(path)  # the request as made loads
    key = load_private_key(home / "identity.key.pem")
    assert isinstance(key, Ed25519PrivateKey)
    own = bls.BlsKey.from_identity(SigningKey(key))
    listed = m.neighbourhood_list_message("fed", 1, NAMES, run="", round_digest=bytes(32))
    request_sig = bytes.fromhex(data["bls_signature"])
    with pytest.raises(IntegrityError):
        bls.verify_one(own.public_bytes(), listed, request_sig)
    forged = tmp_path / "forged.req"
    forged.write_text(json.dumps({**data, "bls_signature": own.sign(listed).hex()}))
    with pytest.raises(IntegrityError, match="did not sign the request"):
        SiteRequest.load(forged)
