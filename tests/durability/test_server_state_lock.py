"""Two server processes on one state folder: the second is refused, a killed one leaves no lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _durable_fed import SPEC

from securefl.errors import ConfigError
from securefl.runtime.journal import Journal
from securefl.runtime.server_state import JOURNAL_NAME, ServerState

_HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from securefl.params import ParamSpec
    from securefl.runtime.server_state import ServerState
    spec = ParamSpec(names=("w",), shapes=((int(sys.argv[2]),),), dtypes=("float32",))
    state = ServerState(Path(sys.argv[1]), federation="f", mode="mask", spec=spec)
    print(state.run_id, flush=True)
    time.sleep(120)
    """
)


def _holder(folder: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(folder), str(SPEC.shapes[0][0])],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert run_id, "the holding process did not open the folder"
    return proc, run_id


def test_a_second_server_process_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    proc, run_id = _holder(tmp_path)
    try:
        entries_before = len(Journal(tmp_path / JOURNAL_NAME).entries)
        with pytest.raises(ConfigError, match="another server process"):
            ServerState(tmp_path, federation="f", mode="mask", spec=SPEC)
        # refused before it wrote anything: the running server's journal is untouched
        assert len(Journal(tmp_path / JOURNAL_NAME).entries) == entries_before
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()
    # a killed server leaves no stale lock: the next one resumes the same run
    assert ServerState(tmp_path, federation="f", mode="mask", spec=SPEC).run_id == run_id


def test_a_restart_inside_one_process_takes_the_lock_again(tmp_path: Path) -> None:
    first = ServerState(tmp_path, federation="f", mode="mask", spec=SPEC)
    second = ServerState(tmp_path, federation="f", mode="mask", spec=SPEC)
    assert first.run_id == second.run_id
