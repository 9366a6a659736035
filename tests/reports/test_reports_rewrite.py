"""A site rewrites and re-signs its own history: what the audit still catches.

The site holds its own key, so every signature and every link of a rewritten
chain verifies. What gives it away is the policy along the chain (a budget
may only go down; δ, the accountant and the dataset size never change) and,
with the server's signed round log, the rounds the server saw it take part in.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reports_fixtures import Federation, build

from securefl.reports import audit
from securefl.reports.findings import FAIL, INFO, WARN


def failing(fed: Federation, **kwargs: object) -> set[str]:
    return {f.code for f in audit([fed.root], **kwargs).findings if f.fails}  # type: ignore[arg-type]


def found(fed: Federation, code: str) -> list[tuple[str | None, int | None, str]]:
    return [(f.site, f.round_id, f.severity) for f in audit([fed.root]).findings if f.code == code]


Builder = Callable[..., Federation]


def _drop_round_one(fed: Federation) -> tuple[float, float]:
    """The review's attack: drop one round, re-claim ε for the rest, re-sign. (true, claimed)."""
    recs = fed.lines("alpha")
    true_claim = recs[-1]["epsilon"]
    kept = [recs[0], recs[2]]
    fed.rewrite_chain("alpha", kept)
    return true_claim, kept[-1]["epsilon"]


def test_dropped_round_resigned_is_at_least_a_warning_without_the_log(builder: Builder) -> None:
    fed = builder({"alpha": 640, "beta": 640}, rounds=3)
    true_claim, claimed = _drop_round_one(fed)
    assert claimed < true_claim  # the rewrite really hides privacy spent
    assert found(fed, "round_skipped") == [("alpha", 2, WARN)]


def test_dropped_round_resigned_fails_against_the_server_log(builder: Builder) -> None:
    fed = builder({"alpha": 640, "beta": 640}, rounds=3, server_log=True)
    assert failing(fed) == set()
    _drop_round_one(fed)
    report = audit([fed.root])
    assert not report.passed
    unrecorded = [
        (f.site, f.round_id) for f in report.findings if f.code == "participation_unrecorded"
    ]
    assert unrecorded == [("alpha", 1)]
    assert {f.code for f in report.findings if f.fails} == {"participation_unrecorded"}


def test_dropped_first_or_last_round_is_at_least_a_warning_without_the_log(
    builder: Builder,
) -> None:
    # no gap in the round ids: only the other sites' chains show the missing ends
    fed = builder({"alpha": 640, "beta": 640}, rounds=3)
    recs = fed.lines("alpha")
    fed.rewrite_chain("alpha", recs[1:])
    assert found(fed, "round_skipped") == [("alpha", 1, WARN)]
    fed.rewrite_chain("beta", fed.lines("beta")[:2])  # a prefix: nothing to re-sign
    assert found(fed, "site_behind") == [("beta", 2, WARN)]


def test_dropped_first_round_resigned_fails_against_the_server_log(builder: Builder) -> None:
    fed = builder({"alpha": 640, "beta": 640}, rounds=3, server_log=True)
    fed.rewrite_chain("alpha", fed.lines("alpha")[1:])
    assert failing(fed) == {"participation_unrecorded"}
    assert found(fed, "round_skipped") == [("alpha", 1, INFO)]


def test_a_skip_the_log_explains_is_informational(builder: Builder) -> None:
    # beta dropped out of round 1 before submitting: no record, and the log agrees
    fed = builder({"alpha": 640, "beta": 640, "gamma": 640}, rounds=3, server_log=True)
    log = fed.log_lines()
    log[1]["survivors"] = log[1]["submitted"] = ["alpha", "gamma"]
    fed.rewrite_log(log)
    recs = fed.lines("beta")
    fed.rewrite_chain("beta", [recs[0], recs[2]])
    assert failing(fed) == set()
    assert found(fed, "round_skipped") == [("beta", 2, INFO)]


def test_raised_budget_mid_chain_fails(federation: Federation) -> None:
    recs = federation.lines("alpha")
    recs[2]["epsilon_budget"] = 20.0
    federation.rewrite_chain("alpha", recs)
    assert failing(federation) == {"budget_raised"}
    assert found(federation, "budget_raised") == [("alpha", 2, FAIL)]


def test_lowered_budget_mid_chain_passes(federation: Federation) -> None:
    # the ledger allows lowering a budget; ε so far stays within the lower one
    recs = federation.lines("alpha")
    recs[2]["epsilon_budget"] = recs[2]["epsilon"] + 1.0
    federation.rewrite_chain("alpha", recs)
    assert failing(federation) == set()


def test_raised_budget_and_delta_mid_chain_fail(federation: Federation) -> None:
    # the review's second attack: both raised halfway, claims honest under the new values
    recs = federation.lines("beta")
    for rec in recs[1:]:
        rec["epsilon_budget"], rec["delta"] = 50.0, 1e-4
    federation.rewrite_chain("beta", recs)
    assert failing(federation) == {"budget_raised", "delta_changed"}


def test_changed_delta_mid_chain_fails(federation: Federation) -> None:
    recs = federation.lines("alpha")
    recs[2]["delta"] = 1e-4
    federation.rewrite_chain("alpha", recs)
    assert failing(federation) == {"delta_changed"}


def test_changed_accountant_mid_chain_fails(federation: Federation) -> None:
    recs = federation.lines("alpha")
    recs[2]["accountant"] = "prv"
    federation.rewrite_chain("alpha", recs)
    assert failing(federation) == {"accountant_changed"}


def test_changed_dataset_size_mid_chain_fails(federation: Federation) -> None:
    recs = federation.lines("alpha")
    recs[2]["dataset_size"], recs[2]["expected_batch_size"] = 1280, 128  # same sample rate
    federation.rewrite_chain("alpha", recs)
    assert failing(federation) == {"dataset_size_changed"}


def test_delta_not_below_one_over_dataset_size_fails(builder: Builder, tmp_path: Path) -> None:
    fed = builder({"alpha": 640, "beta": 320}, delta=1 / 640)  # beta: 1/640 < 1/320
    assert failing(fed) == {"delta_too_large"}
    assert found(fed, "delta_too_large") == [("alpha", 0, FAIL)]
    assert failing(build(tmp_path / "below", {"alpha": 640}, delta=0.99 / 640)) == set()


def test_a_sample_rate_far_below_batch_over_n_fails_without_a_log(builder: Builder) -> None:
    # the record alone: batch = round(q·n) for an honest record, so |q·n − batch| ≤ 1/2;
    # expected_batch_size = 1 with q = 1e-6 must fail even with no announcement to hold
    # it against
    fed = builder({"alpha": 640, "beta": 640}, rounds=2)
    recs = fed.lines("alpha")
    for rec in recs:
        rec["expected_batch_size"] = 1
        rec["event"]["sample_rate"] = 1e-6
    fed.rewrite_chain("alpha", recs)
    assert failing(fed) == {"sample_rate_inconsistent"}
