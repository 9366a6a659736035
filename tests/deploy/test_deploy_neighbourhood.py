"""The neighbourhood mask round from kits: the parties take the roster's BLS keys, or refuse.

Built in process through the deploy builders (``Site.from_kit`` over a
memory transport, ``build_server`` without starting it); the run over real
processes is ``test_neighbourhood_processes.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import NEIGHBOURHOOD_SITES, NEIGHBOURHOOD_TOML, SITES
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from securefl.deploy.server import build_server
from securefl.errors import ConfigError
from securefl.provision import provision
from securefl.provision.kit import Kit
from securefl.provision.pki import load_private_key
from securefl.reports._canonical import canonical_bytes
from securefl.runtime import Site
from securefl.secagg import (
    IntegerMaskServerMode,
    IntegerMaskSiteMode,
    MaskServerMode,
    MaskSiteMode,
    bls_entry,
)
from securefl.transport.memory import MemoryHub


def _as_version_3(kits: Path) -> None:
    """Every kit's roster rewritten as an older securefl signed it: version 3, no BLS keys."""
    data = json.loads((kits / "server" / "roster.json").read_text(encoding="utf-8"))
    data["version"] = 3
    for site in data["sites"]:
        del site["bls_key"], site["bls_proof"]
    body = {k: v for k, v in data.items() if k != "signature"}
    key = load_private_key(kits / "ca" / "ca.key.pem")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signed = {**body, "signature": key.sign(canonical_bytes(body), ec.ECDSA(hashes.SHA256())).hex()}
    for kit in kits.glob("*/kit.json"):
        (kit.parent / "roster.json").write_text(json.dumps(signed), encoding="utf-8")


def test_a_neighbourhood_federation_provisions_and_every_party_builds_its_half(
    neighbourhood_kits: Path,
) -> None:
    """Provision, load every kit, build each site's half and the server's from its kit."""
    kits = neighbourhood_kits
    server_kit = Kit.load(kits / "server")
    cfg = server_kit.federation
    plan = cfg.mask.plan(
        federation=cfg.name,
        round_id=1,
        cohort=NEIGHBOURHOOD_SITES,
        federation_size=len(NEIGHBOURHOOD_SITES),
    )
    assert plan.local and (plan.k, plan.threshold) == (4, 3)  # the k-regular neighbourhood round
    bls_roster = server_kit.roster.bls_roster()
    hub = MemoryHub()
    for name in NEIGHBOURHOOD_SITES:
        kit = Kit.load(kits / name)
        assert bls_roster[name] == bls_entry(kit.signing_key())
        site = Site.from_kit(kits / name, transport=hub.connect(name))
        assert isinstance(site.mode, MaskSiteMode)
    server = build_server(kits / "server", host="127.0.0.1", port=0)
    server.http.start()  # started and stopped: stop() is what releases its socket
    try:
        assert isinstance(server.driver.mode, MaskServerMode)
    finally:
        server.transport.close()
        server.http.stop()


def test_an_old_roster_is_refused_for_the_neighbourhood_round_in_one_line(
    neighbourhood_kits: Path,
) -> None:
    """A roster without BLS keys loads, but neither a site nor the server starts the round."""
    kits = neighbourhood_kits
    _as_version_3(kits)
    assert Kit.load(kits / "site-a").roster.version == 3  # it still loads
    hub = MemoryHub()
    with pytest.raises(ConfigError) as site_error:
        Site.from_kit(kits / "site-a", transport=hub.connect("site-a"))
    with pytest.raises(ConfigError) as server_error:
        build_server(kits / "server", host="127.0.0.1", port=0)
    for error in (site_error, server_error):
        message = str(error.value)
        assert "\n" not in message
        assert "mask.neighbourhood" in message and "re-provision" in message


def test_an_old_roster_still_runs_the_cohort_wide_round(kits: Path) -> None:
    """Without mask.neighbourhood nothing needs the BLS keys: an old roster serves as before."""
    _as_version_3(kits)
    hub = MemoryHub()
    for name in SITES:
        assert isinstance(
            Site.from_kit(kits / name, transport=hub.connect(name)).mode, MaskSiteMode
        )
    server = build_server(kits / "server", host="127.0.0.1", port=0)
    server.http.start()  # started and stopped: stop() is what releases its socket
    try:
        assert isinstance(server.driver.mode, MaskServerMode)
    finally:
        server.transport.close()
        server.http.stop()


def test_a_distributed_neighbourhood_federation_builds_its_integer_halves_from_kits(
    tmp_path: Path,
) -> None:
    """privacy = "distributed" runs the neighbourhood round too: the integer halves get the
    roster's BLS keys, and provisioning sizes each share from the plan's colluder count."""
    text = NEIGHBOURHOOD_TOML.replace(
        'secure = "mask"\n',
        'secure = "mask"\nprivacy = "distributed"\n'
        "[distributed]\nsample_rate = 0.1\nrecords = 600\n",
    ).replace("batch_size = 16\n", "")
    (tmp_path / "fed.toml").write_text(text, encoding="utf-8")
    kits = provision(tmp_path / "fed.toml", tmp_path / "kits").out
    readme = (kits / "site-a" / "README.md").read_text(encoding="utf-8")
    assert "colluders assumed\n  c = 1" in readme  # sized for c = 1; the round withstands 2
    hub = MemoryHub()
    for name in NEIGHBOURHOOD_SITES:
        site = Site.from_kit(kits / name, transport=hub.connect(name))
        assert isinstance(site.mode, IntegerMaskSiteMode) and site.distributed is not None
    server = build_server(kits / "server", host="127.0.0.1", port=0)
    server.http.start()  # started and stopped: stop() is what releases its socket
    try:
        assert isinstance(server.driver.mode, IntegerMaskServerMode)
    finally:
        server.transport.close()
        server.http.stop()
