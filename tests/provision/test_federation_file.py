"""The federation file's deployment tables: defaults, validation, errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.config import (
    FederationConfig,
    HEConfig,
    ModelConfig,
    PKIConfig,
    ServerConfig,
    SiteSpec,
    load_federation,
)
from securefl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

FULL = """
[federation]
name = "oncology"
secure = "he"
[server]
hosts = ["coordinator.localhost", "127.0.0.5"]
port = 9443
bind = "127.0.0.5"
[pki]
cert_days = 90
ca_days = 730
[mask]
clip = 0.5
dropout_rate = 0.2
min_cohort = 4
[he]
preset = "ckks-n8192"
keymaker = "site-b"
[model]
features = 12
classes = 3
seed = 7
[[sites]]
name = "site-a"
[[sites]]
name = "site-b"
"""


def _load(tmp_path: Path, text: str) -> FederationConfig:
    path = tmp_path / "fed.toml"
    path.write_text(text, encoding="utf-8")
    return load_federation(path)


def test_every_deployment_table_loads(tmp_path: Path):
    fed = _load(tmp_path, FULL)
    assert fed.server == ServerConfig(
        hosts=("coordinator.localhost", "127.0.0.5"), port=9443, bind="127.0.0.5"
    )
    assert fed.server.url == "https://coordinator.localhost:9443"
    assert fed.pki == PKIConfig(cert_days=90, ca_days=730)
    assert (fed.mask.clip, fed.mask.dropout_rate, fed.mask.min_cohort) == (0.5, 0.2, 4)
    assert fed.he == HEConfig(preset="ckks-n8192", keymaker="site-b")
    assert fed.he_keymaker == "site-b"
    assert fed.model == ModelConfig(features=12, classes=3, seed=7)


def test_existing_files_keep_loading_with_the_simulation_defaults():
    fed = load_federation(ROOT / "examples" / "fed.toml")
    assert fed.server.hosts == ("localhost", "127.0.0.1") and fed.server.port == 8443
    assert fed.mask.clip == 1.0  # what simulate masks with
    assert fed.he.preset == "bfv-n4096" and fed.he_keymaker == "site-a"  # first by name
    assert fed.model == ModelConfig()


@pytest.mark.parametrize(
    "table, key",
    [
        ('[server]\nhosts = ["*.localhost"]', "server.hosts"),
        ("[server]\nhosts = []", "server.hosts"),
        ('[server]\nhosts = ["a.org", "a.org"]', "server.hosts"),
        ("[server]\nport = 0", "server.port"),
        ("[server]\nport = 70000", "server.port"),
        ('[server]\nbind = "everywhere"', "server.bind"),
        ("[server]\nprot = 1", "server.prot"),
        ("[pki]\ncert_days = 0", "pki.cert_days"),
        ("[pki]\ncert_days = 5000", "pki.cert_days"),
        ("[pki]\ncert_days = 400\nca_days = 300", "pki.cert_days"),
        ("[pki]\nca_days = 1.5", "pki.ca_days"),
        ("[mask]\nclip = -1.0", "mask.clip"),
        ("[mask]\ndropout_rate = 0.7", "mask.dropout_rate"),
        ("[mask]\nmin_cohort = 2", "mask.min_cohort"),
        ("[mask]\nclipp = 1.0", "mask.clipp"),
        ("[mask]\nprecision_bits = 30", "[mask]"),
        ('[he]\npreset = "rot13"', "he.preset"),
        ('[he]\nkeymaker = "site-q"', "he.keymaker"),
        ("[model]\nfeatures = 0", "model.features"),
        ("[model]\nclasses = 1", "model.classes"),
        ("[model]\nseed = -1", "model.seed"),
        ('[model]\nfactory = "not a path"', "model.factory"),
        ('[model]\nfactory = "m:f"\nfeatures = 3', "model.factory"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path: Path, table: str, key: str):
    text = table + '\n[[sites]]\nname = "site-a"\n[[sites]]\nname = "site-b"\n'
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "fed.toml") + ": "), message
    assert key in message, message


def test_the_preset_names_match_the_he_package():
    from securefl._deploy_config import DEFAULT_HE_PRESET, HE_PRESETS
    from securefl.he import DEFAULT_PRESET, PRESETS

    assert set(HE_PRESETS) == set(PRESETS) and DEFAULT_HE_PRESET == DEFAULT_PRESET.name


def test_keymaker_must_be_a_site_and_defaults_to_the_first_by_name():
    sites = (SiteSpec(name="zeta"), SiteSpec(name="alpha"))
    assert FederationConfig(sites=sites).he_keymaker == "alpha"
    with pytest.raises(ConfigError, match=r"he\.keymaker"):
        FederationConfig(sites=sites, he=HEConfig(keymaker="beta"))


_ipv4 = st.ip_addresses(v=4).map(str)


@settings(max_examples=50, deadline=None)
@given(port=st.integers(min_value=-(2**20), max_value=2**20), host=_ipv4)
def test_property_a_port_is_accepted_exactly_in_range(port: int, host: str):
    if 1 <= port <= 65535:
        assert ServerConfig(hosts=(host,), port=port).url.endswith(f":{port}")
    else:
        with pytest.raises(ConfigError, match=r"server\.port"):
            ServerConfig(hosts=(host,), port=port)


@settings(max_examples=50, deadline=None)
@given(cert=st.integers(min_value=1, max_value=825), ca=st.integers(min_value=1, max_value=36500))
def test_property_a_certificate_never_outlives_its_ca(cert: int, ca: int):
    if cert <= ca:
        assert PKIConfig(cert_days=cert, ca_days=ca).cert_days == cert
    else:
        with pytest.raises(ConfigError, match=r"pki\.cert_days"):
            PKIConfig(cert_days=cert, ca_days=ca)
