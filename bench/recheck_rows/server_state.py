"""Removal entries for the claim rows of ``threat_models/server_state.md``."""

from __future__ import annotations

from ._common import (
    _STATE,
    Removal,
    Row,
    _off,
)

_JOURNAL = "securefl/runtime/journal.py"
_DRIVER = "securefl/runtime/server.py"
_WRITE_CHECKPOINT = (
    '                write_atomic(self.folder / CHECKPOINTS / entry["checkpoint"]["file"], blob)\n'
)

ROWS: tuple[Row, ...] = (
    Row(
        "state-checkpoint-hash",
        "server_state.md",
        "A checkpoint (model, strategy state, or an he aggregate)",
        (_off(_STATE, "sha256_hex(raw) != sha256"),),
    ),
    Row(
        "state-other-federation",
        "server_state.md",
        "A restart is refused on a folder of another federation",
        (_off(_STATE, "first.get(key) != want"),),
    ),
    Row(
        "state-journal-lines",
        "server_state.md",
        "A torn last journal line",
        (
            _off(
                "securefl/runtime/journal.py",
                'obj["sha256"] != _line_hash(body, prev) or canonical_bytes(obj) != raw',
            ),
        ),
    ),
    Row(
        "state-resume",
        "server_state.md",
        "A server killed at any stage of a round",
        (
            _off(_STATE, 'openings and (not rounds or rounds[-1]["round"] < high)'),  # no abandon
            Removal(_STATE, "        self._restore_model(driver, rounds)\n", ""),  # model lost
            Removal(  # the model comes back, FedAvgM's momentum does not
                _STATE,
                "        driver.strategy.load_state(\n",
                "        (lambda _: None)(\n",
            ),
        ),
    ),
    Row(
        "state-round-ids",
        "server_state.md",
        "Round ids are never reused across restarts",
        (  # the round id not journalled before the round opens
            Removal(
                _STATE,
                "        self._journal.append(\n"
                '            {"kind": "opening", "round": round_id, "cohort": list(cohort), '
                '"announced": announced}\n'
                "        )\n",
                "",
            ),
            Removal(  # a round whose id could not be saved opens all the same
                _DRIVER,
                'cannot be saved (%s)", ctx.round, exc)\n'
                "                self.stage = ServerStage.WAITING_FOR_SITES\n"
                "                return []\n",
                'cannot be saved (%s)", ctx.round, exc)\n',
            ),
        ),
    ),
    Row(
        "state-atomic-checkpoint",
        "server_state.md",
        "A crash while a checkpoint is written loses at most that round",
        (
            Removal(_JOURNAL, 'tmp = path.with_name(f".{path.name}.tmp")', "tmp = path"),
            Removal(  # the journal names the checkpoint before its file is written
                _STATE,
                "            if blob is not None:  # the file first: the journal names only what "
                "is on disk\n" + _WRITE_CHECKPOINT + "            self._journal.append(entry)\n",
                "            self._journal.append(entry)\n"
                "            if blob is not None:\n" + _WRITE_CHECKPOINT,
            ),
        ),
    ),
    Row(
        "state-late-message",
        "server_state.md",
        "A message for a round the server no longer holds",
        (
            Removal(  # a late message of an ended round held against its site
                _DRIVER,
                '            log.info("dropping %s from %s: round %d is over", env.stage, '
                "env.sender, env.round)\n"
                "            return []\n",
                "            raise ProtocolError(\n"
                '                f"{env.stage!r} from {env.sender!r}: round is over"\n'
                "            )\n",
            ),
            _off(_DRIVER, "env.round > self._round"),  # a future round's message dropped too
        ),
    ),
    Row(
        "state-he-restart",
        "server_state.md",
        "In `he` mode a restarted server needs no new keys",
        (
            Removal(
                _STATE,
                "                self._replay_keys(driver, entry)\n",
                "                pass\n",
            ),
            Removal(_STATE, "acked = acks[-1] if acks else {}", "acked = {}"),
        ),
    ),
    Row(
        "state-folder-lock",
        "server_state.md",
        "A second server process on the same state folder",
        (
            Removal(
                _STATE,
                "        lock.acquire()\n    except Timeout:",
                "        pass\n    except Timeout:",
            ),
        ),
    ),
)
