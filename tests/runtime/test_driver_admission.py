"""The driver takes messages only from the roster: a stranger can neither stall nor shrink a round.

Without the check any name could say hello: it would sit in the next cohort,
so the round could not complete before its deadline (a mask round could not
even open its masks), and the honest sites' privacy spent on it would be
wasted. The transport authenticates senders; the driver refuses names
outside the roster on its own, whatever transport feeds it.
"""

import numpy as np
import pytest

from securefl.aggregation import PlainMode, RoundContext
from securefl.config import RoundConfig
from securefl.errors import ConfigError, ProtocolError
from securefl.params import ParamSpec
from securefl.runtime import messages as m
from securefl.runtime.global_model import PlainGlobalModel
from securefl.runtime.server import ServerDriver, ServerStage
from securefl.strategy import FedAvg
from securefl.wire import SERVER, Envelope

SPEC = ParamSpec(names=("w",), shapes=((3,),), dtypes=("float32",))
ROSTER = ("a", "b", "c")


def _driver(*, expected=ROSTER, admit=ROSTER) -> ServerDriver:
    return ServerDriver(
        federation="f",
        mode=PlainMode(),
        strategy=FedAvg(),
        model=PlainGlobalModel(np.zeros(3, dtype=np.float32)),
        spec=SPEC,
        rounds=RoundConfig(max_rounds=2, min_sites=2),
        max_weight=100.0,
        expected_sites=expected,
        admit=admit,
    )


def _env(sender: str, stage: str, payload: bytes = b"", rnd: int = 0) -> Envelope:
    return Envelope(
        federation="f", round=rnd, stage=stage, sender=sender, receiver=SERVER, payload=payload
    )


def _submit(d: ServerDriver, site: str, vector: list[float], weight: float) -> list[Envelope]:
    ctx = RoundContext(
        federation="f", round=d.current_round, cohort=d._cohort, dimension=3,
        max_weight=100.0, min_sites=2,
    )  # fmt: skip
    out = d.handle(_env(site, m.REPORT, m.Report(metrics={}).to_bytes(), d.current_round))
    for env in PlainMode().site(ctx, site).submit(np.asarray(vector, np.float32), weight):
        out += d.handle(env)
    return out


def test_a_stranger_cannot_join_so_the_roster_sites_complete_the_round_alone():
    d = _driver()
    with pytest.raises(ProtocolError, match="not on the roster"):
        d.handle(_env("mallory", m.HELLO))
    assert d.present == []
    for site in ROSTER:
        d.handle(_env(site, m.HELLO))
    assert d.stage is ServerStage.ROUND_OPEN
    assert d._cohort == ROSTER  # not shrunk to make room, not grown by the stranger
    # the three roster sites complete the round by themselves, no deadline needed
    _submit(d, "a", [1, 0, 0], 10)
    _submit(d, "b", [0, 1, 0], 10)
    _submit(d, "c", [0, 0, 1], 10)
    assert [h.status for h in d.history] == ["aggregated"]
    assert d.history[0].survivors == ROSTER


def test_a_stranger_mid_round_changes_nothing():
    d = _driver()
    for site in ROSTER:
        d.handle(_env(site, m.HELLO))
    for stage in (m.HELLO, m.REPORT, m.BYE, "plain/update"):
        with pytest.raises(ProtocolError, match="not on the roster"):
            d.handle(_env("mallory", stage, b"", d.current_round))
    assert "mallory" not in d.present and d._cohort == ROSTER
    _submit(d, "a", [3, 3, 3], 10)
    _submit(d, "b", [3, 3, 3], 10)
    _submit(d, "c", [3, 3, 3], 10)
    assert d.history[0].status == "aggregated" and d.history[0].survivors == ROSTER


def test_an_expected_site_outside_the_roster_is_a_configuration_error():
    with pytest.raises(ConfigError):
        _driver(expected=("a", "b", "z"))


def test_without_a_roster_the_driver_admits_any_name_as_before():
    d = _driver(admit=None, expected=())
    d.handle(_env("anyone", m.HELLO))
    assert d.present == ["anyone"]
