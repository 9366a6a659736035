"""A server killed at every stage of a round and restarted from its state folder.

For ``plain``, ``mask`` and ``he``: the run finishes, every completed round
is in the history, the journal and the signed round log exactly once, no
round id is ever opened twice (the mask sites' round logs would refuse to
mask twice under one id), and the final model equals the model of the
rounds that completed, with the strategy's momentum carried across the
restart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _durable_fed import SITES, STRATEGY, Federation, update

from securefl.reports.server_log import read_server_log
from securefl.runtime.server import ServerDriver, ServerStage
from securefl.runtime.server_state import RESTARTED
from securefl.strategy import make_strategy

MODES = ("plain", "mask", "he")


def _stages(tmp_path: Path, secure: str) -> list[str]:
    """The server's stages in round 2 of an uninterrupted run (the crash points)."""
    seen: list[str] = []
    fed = Federation(tmp_path / "reference", secure)
    fed.say_hello()

    def watch(driver: ServerDriver) -> bool:
        if driver.current_round == 2 and driver.stage is ServerStage.ROUND_OPEN:
            if driver.aggregator_stage not in seen:
                seen.append(driver.aggregator_stage)
        return False

    fed.run(crash=watch)
    _check(fed, crashed_round=None)
    return seen


def _expected_model(fed: Federation) -> np.ndarray:
    """θ from replaying the strategy over the rounds the history says were aggregated."""
    strategy = make_strategy(STRATEGY)
    theta = fed.theta0.astype(np.float64)
    for summary in fed.driver.history:
        if summary.status == "aggregated":
            mean = np.mean([update(s, summary.round) for s in summary.survivors], axis=0)
            theta = strategy.apply(theta, mean.astype(np.float64), summary.round)
    return theta


def _check(fed: Federation, crashed_round: int | None, completed: int = 3) -> None:
    driver = fed.driver
    assert driver.stage is ServerStage.FINISHED and not driver.halted
    assert fed.violations == []
    ids = [h.round for h in driver.history]
    assert ids == sorted(set(ids)), "a round id appears twice in the history"
    journal = [e["round"] for e in fed.driver.journal.journal.entries if e["kind"] == "round"]
    assert journal == ids
    opened = [e["round"] for e in fed.driver.journal.journal.entries if e["kind"] == "opening"]
    assert opened == sorted(set(opened)), "a round id was opened twice"
    for site in fed.sites.values():
        assert site.started == sorted(set(site.started))
    log, findings = read_server_log(
        fed.log.path, federation="durable", public_key=fed.server_key.public_bytes()
    )
    assert findings == [] and log is not None
    assert sorted(log.rounds) == ids
    assert {e["run"] for e in log.rounds.values()} == {driver.run_id}
    assert driver.completed_rounds == completed
    if crashed_round is not None:
        abandoned = driver.history[[h.round for h in driver.history].index(crashed_round)]
        assert (abandoned.status, abandoned.reason) == ("abandoned", RESTARTED)
    expected = _expected_model(fed)
    for site in fed.sites.values():
        assert site.finished is not None
        np.testing.assert_allclose(site.finished, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("secure", MODES)
def test_a_server_killed_at_each_stage_resumes_and_finishes(tmp_path: Path, secure: str) -> None:
    stages = _stages(tmp_path, secure)
    assert stages, "no stage of round 2 was seen"
    for i, stage in enumerate(stages):
        fed = Federation(tmp_path / f"crash-{i}", secure, max_rounds=4)
        fed.say_hello()
        crashed = []

        def crash(driver: ServerDriver, stage: str = stage) -> bool:
            hit = (
                not crashed
                and driver.current_round == 2
                and driver.stage is ServerStage.ROUND_OPEN
                and driver.aggregator_stage == stage
            )
            if hit:
                crashed.append(driver.current_round)
            return hit

        fed.run(crash=crash)
        assert crashed == [2], f"never reached {stage}"
        assert fed.incarnations == 2
        _check(fed, crashed_round=2)
        assert [h.round for h in fed.driver.history] == [1, 2, 3, 4]


@pytest.mark.parametrize("secure", MODES)
def test_a_server_killed_between_rounds_before_it_logged_the_last_resumes(
    tmp_path: Path, secure: str
) -> None:
    # round 1 is journalled but the process dies before signing it into the round
    # log and before round 2 opens: the restart logs round 1 once and opens round 2
    fed = Federation(tmp_path, secure)
    fed.log_paused = True
    fed.say_hello()

    def crash(driver: ServerDriver) -> bool:
        return fed.incarnations == 1 and len(driver.history) == 1

    fed.run(crash=crash)
    assert fed.incarnations == 2
    _check(fed, crashed_round=None)
    assert [h.round for h in fed.driver.history] == [1, 2, 3]


def test_he_keys_survive_a_restart_before_round_1(tmp_path: Path) -> None:
    # the keys arrived, then the server died: the restarted server holds them and
    # opens round 1 without asking the keymaker again
    fed = Federation(tmp_path, "he")
    fed.say_hello()
    fed.run(crash=lambda d: fed.incarnations == 1 and d.mode is not None)
    assert fed.incarnations == 2
    _check(fed, crashed_round=None)
    assert (fed.state_dir / "he_keys.bin").exists()
