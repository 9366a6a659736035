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

import pytest
from _durable_fed import Federation, check_run

from securefl.runtime.server import ServerDriver, ServerStage

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
    check_run(fed, crashed_round=None)
    return seen


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
        check_run(fed, crashed_round=2)
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
    check_run(fed, crashed_round=None)
    assert [h.round for h in fed.driver.history] == [1, 2, 3]


def test_he_keys_survive_a_restart_before_round_1(tmp_path: Path) -> None:
    # the keys arrived, then the server died: the restarted server holds them and
    # opens round 1 without asking the keymaker again
    fed = Federation(tmp_path, "he")
    fed.say_hello()
    fed.run(crash=lambda d: fed.incarnations == 1 and d.mode is not None)
    assert fed.incarnations == 2
    check_run(fed, crashed_round=None)
    assert (fed.state_dir / "he_keys.bin").exists()
