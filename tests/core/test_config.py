from pathlib import Path

import pytest

from securefl.config import (
    DPConfig,
    FederationConfig,
    RoundConfig,
    SiteSpec,
    StrategyConfig,
    load_federation,
)
from securefl.errors import ConfigError


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"epsilon": 0}, "dp.epsilon"),
        ({"epsilon": -1.0}, "dp.epsilon"),
        ({"delta": 1.0}, "dp.delta"),
        ({"delta": 0.0}, "dp.delta"),
        ({"max_grad_norm": float("nan")}, "dp.max_grad_norm"),
        ({"accountant": "magic"}, "dp.accountant"),
        ({"batch_size": 0}, "dp.batch_size"),
    ],
)
def test_unsafe_dp_values_are_refused_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        DPConfig(**kwargs)


def test_configs_are_frozen_and_keyword_only():
    cfg = DPConfig()
    with pytest.raises(AttributeError):
        cfg.epsilon = 5.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        DPConfig(1.0)  # type: ignore[misc]


def test_unknown_mode_and_strategy_refused():
    with pytest.raises(ConfigError, match="secure"):
        FederationConfig(secure="rot13")
    with pytest.raises(ConfigError, match=r"strategy\.name"):
        StrategyConfig(name="fedsgd-magic")
    with pytest.raises(ConfigError, match=r"rounds\.max_rounds"):
        RoundConfig(max_rounds=0)


def test_toml_round_trip_and_site_override(tmp_path: Path):
    path = tmp_path / "fed.toml"
    path.write_text(
        """
[federation]
name = "oncology"
secure = "mask"
[dp]
epsilon = 2.0
delta = 1e-6
[rounds]
max_rounds = 5
[[sites]]
name = "site-a"
num_examples = 100
[[sites]]
name = "site-b"
num_examples = 200
epsilon = 0.5
""",
        encoding="utf-8",
    )
    fed = load_federation(path)
    assert fed.name == "oncology" and fed.secure == "mask"
    assert fed.rounds.max_rounds == 5
    assert fed.site_dp("site-a").epsilon == 2.0
    assert fed.site_dp("site-b").epsilon == 0.5


@pytest.mark.parametrize(
    "body, needle",
    [
        ("[dp]\nepsilonn = 1.0\n", "unknown key 'dp.epsilonn'"),
        ("[dp]\nepsilon = -2.0\n", "dp.epsilon"),
        ("[magic]\nx = 1\n", "unknown table [magic]"),
        ("[dp\n", "not valid TOML"),
        ("[[sites]]\nname = 'a b'\n", "site name"),
    ],
)
def test_toml_errors_name_the_file_and_key(tmp_path: Path, body, needle):
    path = tmp_path / "bad.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_federation(path)
    assert str(path) in str(info.value)
    assert needle in str(info.value)


def test_missing_toml_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="no such file"):
        load_federation(tmp_path / "nope.toml")


def test_secure_by_default(tmp_path: Path):
    assert FederationConfig().secure == "mask"
    path = tmp_path / "fed.toml"
    path.write_text('[federation]\nname = "x"\n', encoding="utf-8")
    assert load_federation(path).secure == "mask"


def test_delta_must_be_below_one_over_n_at_every_site(tmp_path: Path):
    # each site protects its own n records, so a shared δ must be below 1/n of each
    sites = (SiteSpec(name="small", num_examples=20), SiteSpec(name="big", num_examples=1000))
    with pytest.raises(ConfigError, match=r"'small'.*n = 20 records"):
        FederationConfig(dp=DPConfig(delta=0.5), sites=sites)
    with pytest.raises(ConfigError, match=r"'big'.*n = 1000 records"):
        FederationConfig(dp=DPConfig(delta=0.01), sites=sites)
    assert FederationConfig(dp=DPConfig(delta=0.0009), sites=sites).dp.delta == 0.0009
    path = tmp_path / "fed.toml"
    path.write_text(
        '[dp]\ndelta = 0.5\n[[sites]]\nname = "a"\nnum_examples = 10\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"fed\.toml: dp\.delta of site .a. = 0\.5 is not"):
        load_federation(path)
