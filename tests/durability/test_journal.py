"""The journal survives a torn write and refuses damage before its tail."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.errors import IntegrityError
from securefl.runtime.journal import Journal, write_atomic

BODIES = [{"kind": "opening", "round": i, "cohort": ["a", "b"]} for i in range(1, 5)]


def _write(path: Path, bodies: list[dict]) -> bytes:
    journal = Journal(path)
    for body in bodies:
        journal.append(body)
    return path.read_bytes()


def test_a_journal_reopens_with_every_entry(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    _write(path, BODIES)
    assert Journal(path).entries == BODIES


def test_a_torn_last_line_is_discarded_at_every_byte_offset(tmp_path: Path) -> None:
    # a crash in the middle of the last append leaves any prefix of its line
    path = tmp_path / "j.jsonl"
    raw = _write(path, BODIES)
    start = raw.rstrip(b"\n").rfind(b"\n") + 1  # where the last line begins
    for cut in range(start, len(raw)):
        path.write_bytes(raw[:cut])
        journal = Journal(path)
        assert journal.entries == BODIES[:-1], cut
        assert path.read_bytes() == raw[:start]  # the torn bytes are gone from the file
        journal.append(BODIES[-1])  # and the journal carries on where it was
        assert Journal(path).entries == BODIES


def test_a_damaged_last_line_is_a_torn_write(tmp_path: Path) -> None:
    # blocks of the last append persisted out of order: newline there, bytes wrong
    path = tmp_path / "j.jsonl"
    raw = _write(path, BODIES)
    damaged = raw[:-5] + (b"X" if raw[-5:-4] != b"X" else b"Y") + raw[-4:]
    path.write_bytes(damaged)
    assert Journal(path).entries == BODIES[:-1]


@pytest.mark.parametrize("line", [0, 1, 2])
def test_damage_before_the_tail_is_refused(tmp_path: Path, line: int) -> None:
    # skipping a damaged line would forget a round id or a completed round
    path = tmp_path / "j.jsonl"
    raw = _write(path, BODIES)
    lines = raw.split(b"\n")
    lines[line] = lines[line].replace(b'"round":', b'"round": ', 1)  # still JSON, not canonical
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(IntegrityError, match=f"line {line + 1} of 4 is damaged"):
        Journal(path)
    assert path.read_bytes() == b"\n".join(lines)  # nothing was cut


def test_a_line_edited_with_its_hash_recomputed_breaks_the_chain(tmp_path: Path) -> None:
    # a line that checks by itself but does not follow its predecessor: refused
    path = tmp_path / "j.jsonl"
    other = tmp_path / "other.jsonl"
    raw = _write(path, BODIES)
    forged = _write(other, [{"kind": "opening", "round": 9, "cohort": []}]).rstrip(b"\n")
    lines = raw.split(b"\n")
    lines[1] = forged
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(IntegrityError):
        Journal(path)


def test_removing_a_middle_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    lines = _write(path, BODIES).split(b"\n")
    path.write_bytes(b"\n".join(lines[:1] + lines[2:]))
    with pytest.raises(IntegrityError):
        Journal(path)


@settings(max_examples=60, deadline=None)
@given(
    bodies=st.lists(
        st.fixed_dictionaries(
            {"kind": st.sampled_from(["opening", "round"]), "round": st.integers(0, 10**6)}
        ),
        min_size=1,
        max_size=6,
    ),
    cut=st.floats(0, 1),
    junk=st.binary(max_size=20),
)
def test_opening_recovers_the_longest_valid_prefix(
    tmp_path_factory: pytest.TempPathFactory, bodies: list[dict], cut: float, junk: bytes
) -> None:
    path = tmp_path_factory.mktemp("j") / "j.jsonl"
    raw = _write(path, bodies)
    at = int(cut * len(raw))
    # a crash keeps a prefix of the file; what the interrupted append wrote may be garbage
    torn = raw[:at] + junk.replace(b"\n", b"")
    path.write_bytes(torn)
    complete = raw[:at].count(b"\n")
    journal = Journal(path)
    assert journal.entries == bodies[:complete]


def test_write_atomic_replaces_whole_files_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    write_atomic(target, b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_an_edited_value_is_refused(tmp_path: Path) -> None:
    # a canonical line whose value changed: only its own hash can tell
    path = tmp_path / "j.jsonl"
    raw = _write(path, BODIES)
    edited = raw.replace(b'"round":2', b'"round":7', 1)
    assert edited != raw
    path.write_bytes(edited)
    with pytest.raises(IntegrityError, match="line 2 of 4"):
        Journal(path)


class _Crash(BaseException):
    pass


def test_a_crash_during_an_atomic_write_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    target = tmp_path / "model.safetensors"
    write_atomic(target, b"old contents")

    def crash(fd: int) -> None:
        raise _Crash

    monkeypatch.setattr(os, "fsync", crash)  # dies before the new bytes are durable
    with pytest.raises(_Crash):
        write_atomic(target, b"new contents, longer")
    assert target.read_bytes() == b"old contents"
