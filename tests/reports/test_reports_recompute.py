"""Recomputed ε agrees with dp-accounting known answers; findings on the event fields."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from reports_fixtures import Federation

from securefl.reports import audit
from securefl.reports.recompute import independent_pld_epsilon, securefl_epsilon

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "reports_epsilon.json").read_text())


def _event(v: dict[str, float]) -> dict[str, object]:
    return {
        "kind": "dpsgd",
        "sampling": "poisson",
        "noise_multiplier": v["noise_multiplier"],
        "sample_rate": v["sample_rate"],
        "steps": int(v["steps"]),
        "max_grad_norm": 1.0,
        "secure_rng": True,
    }


@pytest.mark.parametrize(
    "vec",
    VECTORS["vectors"],
    ids=lambda v: f"q{v['sample_rate']}-s{v['noise_multiplier']}-T{v['steps']}",
)
def test_both_accountants_agree_with_dp_accounting_vectors(vec: dict[str, float]) -> None:
    events = [_event(vec)]
    # The mapping to dp-accounting is exact: at the vectors' fixed grid, the same number.
    at_vector_grid = independent_pld_epsilon(events, delta=vec["delta"], discretization=1e-3)
    assert at_vector_grid == pytest.approx(vec["pld_epsilon"], rel=1e-9)
    # At the ε-relative grid both recomputations agree and are never above the coarse one.
    independent = independent_pld_epsilon(events, delta=vec["delta"])
    ours = securefl_epsilon(events, delta=vec["delta"], accountant="pld")
    assert independent == pytest.approx(ours, rel=0.02)
    assert independent <= vec["pld_epsilon"] + 1e-9
    rdp = securefl_epsilon(events, delta=vec["delta"], accountant="rdp")
    assert rdp >= vec["rdp_epsilon"] - 1e-9  # never below dp-accounting's own RDP
    assert rdp >= independent * 0.99  # RDP is an upper bound on the tight ε


def test_small_epsilon_is_not_overstated_by_the_pld_grid() -> None:
    # Issue 12: q = 0.0016, σ = 2.77, 6250 steps; a fixed 1e-3 grid said 0.187.
    event = dict(
        _event({"noise_multiplier": 2.77, "sample_rate": 0.0016, "steps": 6250}), steps=6250
    )
    fine = 0.15153  # dp-accounting PLD at 1e-5 (tests/vectors/dp_epsilon.json)
    got = independent_pld_epsilon([event], delta=1e-5)
    assert fine <= got <= fine * 1.02
    assert independent_pld_epsilon([event], delta=1e-5, discretization=1e-3) > fine * 1.2


def test_splitting_one_event_into_rounds_does_not_change_epsilon() -> None:
    vec = VECTORS["vectors"][1]
    whole = _event(vec)
    halves = [dict(whole, steps=whole["steps"] // 2)] * 2  # type: ignore[operator]
    assert independent_pld_epsilon(halves, delta=vec["delta"]) == pytest.approx(
        independent_pld_epsilon([whole], delta=vec["delta"])
    )


def test_shuffle_sampling_has_no_finite_epsilon() -> None:
    event = dict(_event(VECTORS["vectors"][0]), sampling="shuffle")
    assert math.isinf(independent_pld_epsilon([event], delta=1e-5))
    assert math.isinf(securefl_epsilon([event], delta=1e-5, accountant="rdp"))


def test_honest_prv_claims_pass_both_recomputations(builder) -> None:  # type: ignore[no-untyped-def]
    fed: Federation = builder({"alpha": 640}, rounds=2, accountant="prv", budget=20.0)
    report = audit([fed.root])
    assert report.passed, report.findings
    for r in report.rounds:
        assert r.claimed == pytest.approx(r.recomputed)
        assert r.independent == pytest.approx(r.claimed, rel=0.02)


def test_budget_exceeded_is_reported(builder) -> None:  # type: ignore[no-untyped-def]
    fed: Federation = builder({"alpha": 640}, rounds=3, sigma=0.9, budget=2.5)
    report = audit([fed.root])
    over = [r.round_id for r in report.rounds if r.claimed > 2.5]
    assert over, "the fixture must pass its budget"
    found = [f.round_id for f in report.findings if f.code == "budget_exceeded"]
    assert found == over
    assert not report.passed


def test_inconsistent_sample_rate_is_reported(federation: Federation) -> None:
    recs = federation.lines("alpha")
    recs[0]["expected_batch_size"] = 16  # q·n = 64
    federation.resign(recs[0])
    federation.write_lines("alpha", recs[:1])
    found = [f for f in audit([federation.root]).findings if f.code == "sample_rate_inconsistent"]
    assert [(f.site, f.round_id) for f in found] == [("alpha", 0)]
    assert "64/640" not in (found[0].expected or "") and "16/640" in (found[0].expected or "")


def test_non_poisson_sampling_is_reported(federation: Federation) -> None:
    recs = federation.lines("beta")[:1]
    recs[0]["event"]["sampling"] = "shuffle"
    federation.resign(recs[0])
    federation.write_lines("beta", recs)
    report = audit([federation.root])
    assert [(f.site, f.round_id) for f in report.findings if f.code == "non_poisson_sampling"] == [
        ("beta", 0)
    ]
    assert any(f.code == "epsilon_under_reported" and f.site == "beta" for f in report.findings)
