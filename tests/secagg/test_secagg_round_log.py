"""The mask round log names a round by (federation, run, round), and keeps old files.

A site that masked two different updates under one round name hands the
server two messages whose difference leaks; so the log refuses a second
claim of the same (federation, run, round), after a restart too. A new run
may count rounds from 1 again, so run ids keep those apart; a version 1 file
(federation, round only) is read as run ``""`` and kept on the next write.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from securefl.errors import AbortError, DataError
from securefl.secagg._state import RoundLog


def test_a_round_of_one_run_is_refused_twice_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "mask-rounds.json"
    RoundLog(path).claim("fed", 3, "aa")
    restarted = RoundLog(path)  # a new process on the same state folder
    with pytest.raises(AbortError, match="already masked"):
        restarted.claim("fed", 3, "aa")
    restarted.claim("fed", 3, "bb")  # round 3 of another run is another round
    restarted.claim("other", 3, "aa")  # and so is round 3 of another federation
    assert restarted.used("fed", 3, "bb") and not restarted.used("fed", 4, "aa")


def test_a_version_1_log_is_read_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "mask-rounds.json"
    path.write_text(json.dumps({"v": 1, "used": [["fed", 1], ["fed", 2]]}))
    log = RoundLog(path)
    assert log.used("fed", 2)  # run "" for what version 1 recorded
    with pytest.raises(AbortError):
        log.claim("fed", 2)
    log.claim("fed", 2, "aa")
    stored = json.loads(path.read_text())
    assert stored == {"v": 2, "used": [["fed", "", 1], ["fed", "", 2], ["fed", "aa", 2]]}


@pytest.mark.parametrize(
    "body",
    [
        {"v": 3, "used": []},
        {"v": 2, "used": [["fed", 1]]},
        {"v": 1, "used": [["fed", "", 1]]},
        {"v": 2, "used": [["fed", "aa", True]]},
    ],
)
def test_a_log_of_another_shape_is_refused(tmp_path: Path, body: object) -> None:
    path = tmp_path / "mask-rounds.json"
    path.write_text(json.dumps(body))
    with pytest.raises(DataError):
        RoundLog(path).claim("fed", 9, "aa")
