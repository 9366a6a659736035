"""Which roster the audit takes when several sites' folders are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from securefl.errors import DataError
from securefl.reports.audit import find_roster


def _site(root: Path, name: str, roster: bytes) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "roster.json").write_bytes(roster)
    return folder


def test_identical_copies_of_one_roster_are_one_roster(tmp_path: Path) -> None:
    sites = [_site(tmp_path, n, b'{"sites": {}}') for n in ("a", "b", "c")]
    assert find_roster(sites).read_bytes() == b'{"sites": {}}'


def test_rosters_that_differ_are_ambiguous_and_refused(tmp_path: Path) -> None:
    sites = [_site(tmp_path, "a", b'{"sites": {}}'), _site(tmp_path, "b", b'{"sites": {"x": 1}}')]
    with pytest.raises(DataError, match=r"several roster\.json"):
        find_roster(sites)


def test_no_roster_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match=r"no roster\.json"):
        find_roster([tmp_path / "a"])


def test_the_roster_next_to_the_records_wins_over_the_kits_one_above(tmp_path: Path) -> None:
    """Deployed sites: state/roster.json (the audit roster) and the kit's signed one above it."""
    states = []
    for name in ("a", "b", "c"):
        kit = tmp_path / name
        kit.mkdir()
        (kit / "roster.json").write_bytes(b'{"signed": "provisioning"}')
        states.append(_site(kit, "state", b'{"sites": {}}'))
    assert find_roster(states).read_bytes() == b'{"sites": {}}'
