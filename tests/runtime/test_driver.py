"""The sans-IO round driver, fed by hand: no threads, no clocks."""

import numpy as np
import pytest

from securefl.aggregation import PlainMode
from securefl.config import RoundConfig
from securefl.errors import ProtocolError
from securefl.params import ParamSpec
from securefl.runtime import messages as m
from securefl.runtime.global_model import PlainGlobalModel, decode_plain_model
from securefl.runtime.server import ServerDriver, ServerStage
from securefl.strategy import FedAvg
from securefl.wire import SERVER, Envelope

SPEC = ParamSpec(names=("w",), shapes=((3,),), dtypes=("float32",))


def _driver(**rounds_kw) -> ServerDriver:
    rounds = RoundConfig(**{"max_rounds": 3, "min_sites": 2, **rounds_kw})
    return ServerDriver(
        federation="f",
        mode=PlainMode(),
        strategy=FedAvg(),
        model=PlainGlobalModel(np.zeros(3, dtype=np.float32)),
        spec=SPEC,
        rounds=rounds,
        max_weight=100.0,
        expected_sites=("a", "b", "c"),
    )


def _env(sender: str, stage: str, payload: bytes = b"", rnd: int = 0) -> Envelope:
    return Envelope(
        federation="f", round=rnd, stage=stage, sender=sender, receiver=SERVER, payload=payload
    )


def _submit(driver, site, vector, weight, metric=0.5):
    ctx_round = driver.current_round
    agg = PlainMode().site(_ctx(driver, ctx_round), site)
    out = driver.handle(
        _env(site, m.REPORT, m.Report(metrics={"val_accuracy": metric}).to_bytes(), ctx_round)
    )
    for env in agg.submit(np.asarray(vector, dtype=np.float32), weight):
        out += driver.handle(env)
    return out + driver.advance()


def _ctx(driver, rnd):
    from securefl.aggregation import RoundContext

    return RoundContext(
        federation="f", round=rnd, cohort=driver._cohort, dimension=3, max_weight=100.0, min_sites=2
    )


def test_round_opens_when_expected_sites_join_and_aggregates_weighted_mean():
    d = _driver()
    assert d.handle(_env("a", m.HELLO)) == []
    d.handle(_env("b", m.HELLO))
    out = d.handle(_env("c", m.HELLO))
    assert d.stage is ServerStage.ROUND_OPEN
    assert sorted(e.receiver for e in out if e.stage == m.ROUND_START) == ["a", "b", "c"]
    _submit(d, "a", [1, 0, 0], 10)
    _submit(d, "b", [0, 1, 0], 30)
    out = _submit(d, "c", [0, 0, 1], 60)
    assert d.history[0].status == "aggregated"
    start = next(e for e in out if e.stage == m.ROUND_START)
    params = decode_plain_model(m.RoundStart.from_bytes(start.payload).model, 3)
    np.testing.assert_allclose(params, [0.1, 0.3, 0.6], rtol=1e-6)
    assert d.history[0].metrics["val_accuracy"] == pytest.approx(0.5)


def test_dropped_site_is_excluded_on_deadline_and_min_sites_enforced():
    d = _driver()
    for s in "abc":
        d.handle(_env(s, m.HELLO))
    _submit(d, "a", [1, 1, 1], 10)
    _submit(d, "b", [3, 3, 3], 10)
    d.on_deadline()
    assert d.history[0].survivors == ("a", "b")
    np.testing.assert_allclose(d.model.plaintext(), [2, 2, 2])
    d.advance()
    # round 2: only one site answers -> abandoned, model unchanged
    _submit(d, "a", [9, 9, 9], 10)
    d.on_deadline()
    assert d.history[1].status == "abandoned"
    np.testing.assert_allclose(d.model.plaintext(), [2, 2, 2])


def test_an_abandoned_round_names_who_submitted_for_the_round_log():
    # round 1 is abandoned after "a" sent its update (the server read it, "a" was
    # charged); the round log must name "a" so the audit requires its record
    d = _driver()
    for s in "abc":
        d.handle(_env(s, m.HELLO))
    _submit(d, "a", [9, 9, 9], 10)
    d.on_deadline()
    (summary,) = d.history
    assert summary.status == "abandoned" and summary.survivors == ()
    assert summary.submitted == ("a",)


def test_site_leaving_mid_round_finishes_the_round_without_waiting():
    d = _driver()
    for s in "abc":
        d.handle(_env(s, m.HELLO))
    _submit(d, "a", [1, 1, 1], 10)
    _submit(d, "b", [1, 1, 1], 10)
    d.handle(_env("c", m.BYE, b"budget"))
    assert d.history[0].status == "aggregated" and d.history[0].survivors == ("a", "b")
    assert d.present == ["a", "b"]


def test_new_site_joins_from_next_round():
    d = _driver(max_rounds=5)
    for s in "abc":
        d.handle(_env(s, m.HELLO))
    d.handle(_env("d", m.HELLO))
    assert "d" not in d._cohort
    for s in "abc":
        _submit(d, s, [0, 0, 0], 10)
    assert "d" in d._cohort


def test_stops_at_max_rounds_and_sends_finish():
    d = _driver(max_rounds=1)
    for s in "abc":
        d.handle(_env(s, m.HELLO))
    for s in "ab":
        _submit(d, s, [0, 0, 0], 10)
    out = _submit(d, "c", [0, 0, 0], 10)
    assert d.stage is ServerStage.FINISHED
    assert sorted(e.receiver for e in out if e.stage == m.FINISH) == ["a", "b", "c"]


def test_patience_stops_when_metric_stalls():
    d = _driver(max_rounds=10, patience=2)
    for s in "abc":
        d.handle(_env(s, m.HELLO))
    for _ in range(3):
        for s in "abc":
            _submit(d, s, [0, 0, 0], 10, metric=0.9)
    assert d.stage is ServerStage.FINISHED
    assert "no improvement" in d.finish_reason
    assert len(d.history) == 3


def test_out_of_round_and_foreign_messages_are_protocol_errors():
    d = _driver()
    with pytest.raises(ProtocolError):
        d.handle(_env("a", m.REPORT, b"", 1))
    for s in "abc":
        d.handle(_env(s, m.HELLO))
    with pytest.raises(ProtocolError):
        d.handle(_env("mallory", m.REPORT, b"", 1))
    with pytest.raises(ProtocolError):
        d.handle(
            Envelope(
                federation="other",
                round=1,
                stage=m.REPORT,
                sender="a",
                receiver=SERVER,
                payload=b"",
            )
        )


def test_plain_server_refuses_bad_updates():
    from securefl.aggregation import RoundContext

    ctx = RoundContext(federation="f", round=1, cohort=("a", "b"), dimension=3, max_weight=10.0)
    server = PlainMode().server(ctx)
    site = PlainMode().site(ctx, "a")
    with pytest.raises(ProtocolError, match="weight"):
        site.submit(np.zeros(3, dtype=np.float32), 11.0)
    with pytest.raises(ProtocolError, match="NaN"):
        site.submit(np.array([0, np.nan, 0], dtype=np.float32), 1.0)
    (env,) = site.submit(np.zeros(3, dtype=np.float32), 1.0)
    server.handle(env)
    assert server.handle(env) == []  # the same bytes again: a retry, counted once
    (other,) = PlainMode().site(ctx, "a").submit(np.ones(3, dtype=np.float32), 1.0)
    with pytest.raises(ProtocolError, match="already sent a different update"):
        server.handle(other)


def test_next_round_waits_until_the_last_rounds_envelopes_are_out():
    d = _driver()
    for s in "abc":
        d.handle(_env(s, m.HELLO))
    _submit(d, "a", [0, 0, 0], 10)
    _submit(d, "b", [0, 0, 0], 10)
    out = d.handle(_env("c", m.BYE, b"gone"))  # closes round 1
    assert all(e.stage != m.ROUND_START for e in out)
    d.site_unreachable("b")  # found while delivering round 1's end
    out = d.advance()
    assert {e.receiver for e in out if e.stage == m.ROUND_START} == set()  # a alone: too few
    assert d.stage is ServerStage.WAITING_FOR_SITES


def test_reports_must_be_small_and_finite():
    from securefl.errors import WireError
    from securefl.wire import pack

    with pytest.raises(WireError, match="finite"):
        m.Report.from_bytes(pack({"metrics": {"acc": float("inf")}}))
    with pytest.raises(WireError):
        m.Report.from_bytes(pack({"metrics": {f"m{i}": 1.0 for i in range(50)}}))
    with pytest.raises(WireError):
        m.Report.from_bytes(pack({"metrics": {"acc": True}}))


class _MinimumCohortMode(PlainMode):
    """A mode whose server half refuses cohorts below three, as mask does."""

    def server(self, ctx):
        from securefl.errors import ConfigError

        if len(ctx.cohort) < 3:
            raise ConfigError(f"cohort of {len(ctx.cohort)} is below min_cohort=3")
        return super().server(ctx)


def test_a_round_that_cannot_open_halts_the_run_instead_of_retrying():
    d = _driver(max_rounds=5)
    d.mode = _MinimumCohortMode()
    for s in "abc":
        d.handle(_env(s, m.HELLO))
    _submit(d, "a", [0, 0, 0], 10)
    d.handle(_env("b", m.BYE, b"gone"))
    d.on_deadline()  # round 1 closes without b
    out = d.advance()  # round 2 would be a and c only
    assert d.stage is ServerStage.FINISHED
    assert "round 2 cannot open" in d.halted and "min_cohort" in d.halted
    assert d.current_round == 1  # no round id was spent on the refused cohort
    assert sorted(e.receiver for e in out if e.stage == m.FINISH) == ["a", "c"]
    assert d.on_deadline() == [] and d.advance() == []  # and nothing reopens


def test_too_few_sites_after_a_round_halts_the_run():
    d = _driver(max_rounds=5)
    for s in "abc":
        d.handle(_env(s, m.HELLO))
    for s in "abc":
        _submit(d, s, [0, 0, 0], 10)
    d.handle(_env("b", m.BYE, b"budget"))
    d.handle(_env("c", m.BYE, b"budget"))
    d.on_deadline()  # round 2 is abandoned: a alone
    assert d.advance() == []  # round 3 cannot open with one site
    d.on_deadline()
    assert d.stage is ServerStage.FINISHED and "only 1 site(s) remain" in d.halted
    assert d.completed_rounds == 1


def test_a_finished_plan_is_not_a_halt():
    d = _driver(max_rounds=1)
    for s in "abc":
        d.handle(_env(s, m.HELLO))
    for s in "abc":
        _submit(d, s, [0, 0, 0], 10)
    assert d.stage is ServerStage.FINISHED and d.halted == "" and d.completed_rounds == 1


@pytest.mark.parametrize(
    "cls, fields",
    [
        (m.RoundEnd, {"status": "aggregated", "survivors": [1, 2], "reason": ""}),
        (m.RoundEnd, {"status": "abandoned", "survivors": [], "reason": ["x"]}),
        (m.Finish, {"model": b"", "reason": "done", "rounds": -1}),
        (m.Finish, {"model": b"", "reason": "done", "rounds": 1.5}),
        (m.Finish, {"model": b"", "reason": 7, "rounds": 1}),
    ],
)
def test_server_messages_with_fields_of_the_wrong_type_are_refused(cls, fields):
    from securefl.errors import WireError
    from securefl.wire import pack

    with pytest.raises(WireError):
        m.decode(pack(fields), cls)


def test_before_the_first_round_a_refused_cohort_waits_for_more_sites():
    d = ServerDriver(
        federation="f",
        mode=_MinimumCohortMode(),
        strategy=FedAvg(),
        model=PlainGlobalModel(np.zeros(3, dtype=np.float32)),
        spec=SPEC,
        rounds=RoundConfig(max_rounds=3, min_sites=2),
        max_weight=100.0,
    )
    d.handle(_env("a", m.HELLO))
    assert d.handle(_env("b", m.HELLO)) == []  # two are enough for min_sites, not for the mode
    d.on_deadline()
    assert d.stage is ServerStage.WAITING_FOR_SITES and not d.halted
    out = d.handle(_env("c", m.HELLO))
    assert d.stage is ServerStage.ROUND_OPEN and d.current_round == 1
    assert sorted(e.receiver for e in out if e.stage == m.ROUND_START) == ["a", "b", "c"]


def test_a_full_roster_the_mode_refuses_halts_at_once():
    d = _driver()  # expects a, b, c
    d.mode = _MinimumCohortMode()
    d.handle(_env("a", m.HELLO))
    d.handle(_env("b", m.HELLO))
    d.on_deadline()  # c has not come yet: wait
    assert not d.halted
    d.expected_sites = ("a", "b")  # a federation of two that masking cannot serve
    d.on_deadline()
    assert d.stage is ServerStage.FINISHED and "round 1 cannot open" in d.halted


class _PerSiteModel(PlainGlobalModel):
    """A holder that owes each site different bytes, as an incremental history does."""

    def payload_for(self, site: str) -> bytes:
        return b"history for " + site.encode() if site != "c" else self.payload()


def test_each_site_is_sent_the_model_payload_it_is_owed_at_start_and_finish():
    # a site given another site's payload would decode a history that is not its own
    d = _driver()
    d.model = _PerSiteModel(np.zeros(3, dtype=np.float32))
    out = d.handle(_env("a", m.HELLO)) + d.handle(_env("b", m.HELLO))
    out += d.handle(_env("c", m.HELLO))
    starts = {
        e.receiver: m.decode(e.payload, m.RoundStart) for e in out if e.stage == m.ROUND_START
    }
    assert {s: start.model for s, start in starts.items()} == {
        site: d.model.payload_for(site) for site in ("a", "b", "c")
    }
    assert all(start.cohort == ("a", "b", "c") for start in starts.values())
    finish = {e.receiver: m.decode(e.payload, m.Finish) for e in d.stop("operator")}
    assert {s: f.model for s, f in finish.items()} == {
        site: d.model.payload_for(site) for site in ("a", "b", "c")
    }
    assert all(f.reason == "operator" and f.rounds == 1 for f in finish.values())
