"""securefl.modes: each party builds only its own half, from its own keys."""

from __future__ import annotations

import pytest

from securefl.config import StrategyConfig
from securefl.errors import ConfigError
from securefl.hazmat.sign import SigningKey
from securefl.modes import choose_keymaker, server_half, site_half, site_keys
from securefl.wire import SERVER

SITES = ("site-b", "site-a", "site-c")


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {n: SigningKey.generate() for n in SITES}


def _ids(keys: dict[str, SigningKey]) -> dict[str, bytes]:
    return {n: k.public_bytes() for n, k in keys.items()} | {
        SERVER: SigningKey.generate().public_bytes()
    }


def _site(secure: str, keys, name: str, key: SigningKey, tmp_path):
    return site_half(
        secure,
        name=name,
        signing_key=key,
        identity_keys=_ids(keys),
        state_dir=tmp_path,
        federation="f",
        strategy=StrategyConfig(),
        max_weight=10.0,
        min_sites=2,
    )


@pytest.mark.parametrize("secure", ["plain", "mask"])
def test_a_site_cannot_build_a_half_under_another_sites_name(secure, keys, tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not match"):
        _site(secure, keys, "site-a", keys["site-b"], tmp_path)
    with pytest.raises(ConfigError):  # nor under the server's name
        _site(secure, keys, SERVER, keys["site-b"], tmp_path)
    assert _site(secure, keys, "site-a", keys["site-a"], tmp_path).mode.name == secure


def test_the_server_key_is_never_a_site(keys) -> None:
    assert set(site_keys(_ids(keys))) == set(SITES)


@pytest.mark.parametrize("secure", ["mask"])
def test_the_server_half_has_no_site_half(secure, keys) -> None:
    half = server_half(
        secure,
        identity_keys=_ids(keys),
        federation="f",
        strategy=StrategyConfig(),
        max_weight=10.0,
        min_sites=2,
    )
    assert half.mode is not None
    with pytest.raises(ConfigError):
        half.mode.site(None, "site-a")


def test_the_keymaker_is_the_configured_roster_site_or_the_first_by_name(keys) -> None:
    ids = _ids(keys)
    assert choose_keymaker(ids) == "site-a"
    assert choose_keymaker(ids, "site-c") == "site-c"
    for bad in ("mallory", SERVER):
        with pytest.raises(ConfigError, match=r"he\.keymaker"):
            choose_keymaker(ids, bad)


def test_he_needs_max_weight_and_a_secret_context_at_a_site(keys, tmp_path) -> None:
    with pytest.raises(ConfigError, match="max_weight"):
        server_half(
            "he",
            identity_keys=_ids(keys),
            federation="f",
            strategy=StrategyConfig(),
            max_weight=None,
            min_sites=2,
        )
    with pytest.raises(ConfigError, match="secret HE context"):
        _site("he", keys, "site-a", keys["site-a"], tmp_path)
    with pytest.raises(ConfigError, match="unknown secure mode"):
        _site("rot13", keys, "site-a", keys["site-a"], tmp_path)
