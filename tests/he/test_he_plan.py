"""``plan``'s he threat summary says what the he code enforces, from the same constants."""

from __future__ import annotations

from securefl.config import FederationConfig, RoundConfig, SiteSpec
from securefl.he import MIN_SUMMANDS
from securefl.reports import plan
from securefl.reports.plan import threat_summary
from securefl.simulation import modes


def _sites(n: int) -> tuple[SiteSpec, ...]:
    return tuple(SiteSpec(name=f"s{i}") for i in range(n))


def test_the_plan_and_simulate_use_the_he_floor_the_sites_enforce() -> None:
    assert plan._HE_MIN_SUMMANDS == MIN_SUMMANDS == modes.HE_MIN_SUMMANDS == 3


def test_he_summary_states_the_floor_of_three_and_the_dropouts_it_leaves() -> None:
    two = threat_summary(FederationConfig(secure="he", sites=_sites(2)))
    assert two.dropouts.startswith("none") and any("at least 3" in n for n in two.notes)
    assert "a sum of 2 would reveal each update" in two.collusion
    three = threat_summary(FederationConfig(secure="he", sites=_sites(3)))
    assert three.dropouts.startswith("up to 0 of 3")
    five = threat_summary(
        FederationConfig(secure="he", sites=_sites(5), rounds=RoundConfig(min_sites=4))
    )
    assert five.dropouts.startswith("up to 1 of 5") and "at least 4 uploads" in five.collusion
    assert any("n·clip·max_weight/Σw" in n for n in five.notes)
    assert "only the sum" in five.server_sees
    assert any("the server's word" in n for n in five.notes)


def test_simulate_refuses_an_he_federation_or_rehearsal_below_three_sites() -> None:
    import pytest

    from securefl.errors import ConfigError
    from securefl.simulation.modes import check_dropouts

    with pytest.raises(ConfigError, match="at least 3"):
        check_dropouts("he", ["a", "b"], {}, 2)
    with pytest.raises(ConfigError, match="3 uploads"):
        check_dropouts("he", ["a", "b", "c"], {"c": "update"}, 2)
    check_dropouts("he", ["a", "b", "c", "d"], {"d": "update"}, 2)
