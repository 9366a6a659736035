"""A retried, duplicated, late or reordered message changes nothing; a changed one is not counted.

The hostile network (or a site's own retries) repeats site-b's message of
one stage, in every stage of every mode: at once (``duplicate``: an answer
was lost after delivery, the site sent again), or after the server moved on
(``late``). The run must finish as the fault-free run does: every round
aggregated with all four sites (a repeat never expels its sender) and the
same model at every site. A copy with other bytes (``changed``) must never
be counted: the model is the one the first version gives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fault_federation import (
    SITES,
    STAGES,
    TOLERANCE,
    WEIGHTS,
    Run,
    expected_model,
    run_federation,
    update,
)
from faulty import Fault, stage_from

from securefl.aggregation import PlainMode, RoundContext
from securefl.errors import ProtocolError

ROUNDS = 2
CASES = [(secure, stage) for secure, stages in STAGES.items() for stage in stages]
IDS = [f"{secure}-{stage.split('/')[1]}" for secure, stage in CASES]


def _assert_like_fault_free(run: Run, secure: str) -> None:
    assert run.errors == {}
    assert run.violations == []  # no repeat was refused or got its sender rejected
    assert [(h.status, h.survivors) for h in run.history] == [("aggregated", SITES)] * ROUNDS
    assert [h.total_weight for h in run.history] == [sum(WEIGHTS.values())] * ROUNDS
    assert set(run.final) == set(SITES)
    for site in SITES:
        np.testing.assert_allclose(
            run.final[site], expected_model(ROUNDS), atol=TOLERANCE[secure], rtol=0
        )


@pytest.fixture(scope="module")
def fault_free(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    return {
        secure: run_federation(secure, tmp_path_factory.mktemp(secure), rounds=ROUNDS)
        for secure in STAGES
    }


@pytest.mark.parametrize("secure", list(STAGES))
def test_the_fault_free_run_gives_the_known_model(secure: str, fault_free: dict[str, Run]) -> None:
    _assert_like_fault_free(fault_free[secure], secure)


@pytest.mark.parametrize("kind", ["duplicate", "late"])
@pytest.mark.parametrize(("secure", "stage"), CASES, ids=IDS)
def test_a_repeated_message_is_acknowledged_and_counted_once(
    secure: str, stage: str, kind: str, tmp_path: Path, fault_free: dict[str, Run]
) -> None:
    fault = Fault(kind, stage_from(stage, "site-b"), times=ROUNDS)
    run = run_federation(secure, tmp_path, faults={"site-b": [fault]}, rounds=ROUNDS)
    assert fault.hits == ROUNDS  # the repeat really went out, in every round
    repeats = [e for e in run.transports["site-b"].sent if e.stage == stage]
    assert len(repeats) == 2 * ROUNDS
    _assert_like_fault_free(run, secure)
    reference = fault_free[secure]
    assert [h.survivors for h in run.history] == [h.survivors for h in reference.history]
    np.testing.assert_allclose(
        run.final["site-a"], reference.final["site-a"], atol=2 * TOLERANCE[secure], rtol=0
    )


def test_reordered_messages_change_nothing(tmp_path: Path) -> None:
    """site-b's first protocol message overtakes its report, in every mode."""
    for secure in STAGES:
        fault = Fault("swap", stage_from("fed/report", "site-b"), times=ROUNDS)
        run = run_federation(secure, tmp_path / secure, faults={"site-b": [fault]}, rounds=ROUNDS)
        assert fault.hits == ROUNDS
        _assert_like_fault_free(run, secure)


def _expected_given(run: Run) -> np.ndarray:
    theta = expected_model(0)
    for h in run.history:
        total = sum(WEIGHTS[s] for s in h.survivors)
        theta = theta + sum(WEIGHTS[s] * update(s, h.round) for s in h.survivors) / total
    return theta


@pytest.mark.parametrize(
    ("secure", "stage"),
    [(s, st) for s, st in CASES if st != "fed/report"],
    ids=[i for i, (_, st) in zip(IDS, CASES, strict=True) if st != "fed/report"],
)
def test_a_changed_repeat_is_never_counted(secure: str, stage: str, tmp_path: Path) -> None:
    """A second version of a message (other bytes) changes nothing in the aggregate.

    The first version is the one counted; in ``mask`` the site that sent two
    versions of one stage may be dropped from that round as a violation
    (its masks are then recovered), which the expected model accounts for.
    """
    fault = Fault("changed", stage_from(stage, "site-b"), times=ROUNDS)
    run = run_federation(secure, tmp_path, faults={"site-b": [fault]}, rounds=ROUNDS)
    assert fault.hits == ROUNDS
    assert run.errors == {}
    assert [h.status for h in run.history] == ["aggregated"] * ROUNDS
    # refused (plain), rejected (mask) or ignored (he); it arrives after the round when
    # site-b's first version closed it. Never is another site blamed.
    assert all(v.startswith("site-b") for v in run.violations)
    if secure != "mask":  # plain and he keep the first version and ignore the second
        assert all(h.survivors == SITES for h in run.history)
    for site in SITES:
        np.testing.assert_allclose(
            run.final[site], _expected_given(run), atol=TOLERANCE[secure], rtol=0
        )


@pytest.mark.parametrize("secure", ["plain", "he"])
def test_a_second_update_a_site_makes_itself_is_never_counted(secure: str, tmp_path: Path) -> None:
    """site-b sends a second, validly made update (the negated one) after its first."""
    run = run_federation(secure, tmp_path, equivocate="site-b", rounds=ROUNDS)
    assert run.errors == {}
    assert [(h.status, h.survivors) for h in run.history] == [("aggregated", SITES)] * ROUNDS
    assert all(v.startswith("site-b") for v in run.violations)
    for site in SITES:  # the first version counted, once; the second not at all
        np.testing.assert_allclose(
            run.final[site], expected_model(ROUNDS), atol=TOLERANCE[secure], rtol=0
        )


def _plain_update(site: str, vector: list[float], weight: float):  # type: ignore[no-untyped-def]
    ctx = RoundContext(
        federation="f", round=1, cohort=("a", "b", "c"), dimension=3, max_weight=100.0, min_sites=2
    )
    return ctx, PlainMode().site(ctx, site).submit(np.array(vector, np.float32), weight)[0]


def test_plain_takes_a_repeated_update_once_and_refuses_a_changed_one() -> None:
    ctx, first = _plain_update("a", [1, 2, 3], 10.0)
    server = PlainMode().server(ctx)
    assert server.handle(first) == []
    assert server.handle(first) == []  # the retry: acknowledged, not a violation
    _, other = _plain_update("a", [9, 9, 9], 10.0)
    with pytest.raises(ProtocolError, match="different"):
        server.handle(other)
    server.on_departure("c")
    _, b = _plain_update("b", [0, 0, 0], 30.0)
    server.handle(b)
    result = server.result
    assert result is not None and result.total_weight == 40.0
    np.testing.assert_allclose(result.weighted_sum, [10, 20, 30])
