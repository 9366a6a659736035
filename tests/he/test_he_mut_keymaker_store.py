"""The keymaker's state file: every malformed file refused, the secret never written elsewhere.

The file holds the federation's HE secret key. A state file that is not
exactly what :func:`load_or_make` writes (an extra key, another version or
format, a field of the wrong type) must be refused as ``DataError`` rather
than half-loaded; the folder that will hold the key is made owner-only; the
key's bytes are written only inside that folder (never in the shared temporary
directory), and a failed write leaves no copy behind.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest

from securefl.errors import DataError
from securefl.he import SecretContext
from securefl.he._keymaker_store import KEYMAKER_FILE, load_or_make
from securefl.wire import pack

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")

MATERIAL = b"key material sent to the server"


def _maker(secret: SecretContext) -> Any:
    return lambda: (secret, MATERIAL)


def _state(secret: SecretContext) -> dict[str, Any]:
    return {
        "v": 1,
        "format": "securefl-he-keymaker-state",
        "secret": secret.to_bytes(include_secret_key=True),
        "material": MATERIAL,
    }


def _write(path: Path, obj: object) -> Path:
    path.write_bytes(pack(obj))
    path.chmod(0o600)
    return path


def test_a_well_formed_state_file_loads_to_the_saved_keys(
    tmp_path: Path, bfv_secret: SecretContext
) -> None:
    path = _write(tmp_path / KEYMAKER_FILE, _state(bfv_secret))
    secret, material = load_or_make(path, lambda: pytest.fail("keys were made again"))
    assert material == MATERIAL
    assert secret.key_id == bfv_secret.key_id


@pytest.mark.parametrize(
    "change",
    [
        {"extra": b"x"},  # a field this version does not know
        {"v": 2},  # another version, every key present
        {"format": "securefl-something-else"},
        {"secret": "not bytes"},
        {"material": "not bytes"},
        {"material": 7},
    ],
    ids=["extra-key", "version", "format", "secret-type", "material-type", "material-int"],
)
def test_a_state_file_other_than_the_written_shape_is_refused(
    tmp_path: Path, bfv_secret: SecretContext, change: dict[str, object]
) -> None:
    obj = {**_state(bfv_secret), **change}
    path = _write(tmp_path / KEYMAKER_FILE, obj)
    with pytest.raises(DataError):
        load_or_make(path, lambda: pytest.fail("a refused file must not be replaced"))


def test_a_state_file_that_is_not_a_map_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / KEYMAKER_FILE, ["v", "format", "secret", "material"])
    with pytest.raises(DataError):
        load_or_make(path, lambda: pytest.fail("a refused file must not be replaced"))


def test_the_folder_made_for_the_key_is_owner_only_and_made_with_its_parents(
    tmp_path: Path, bfv_secret: SecretContext
) -> None:
    path = tmp_path / "run" / "state" / KEYMAKER_FILE
    load_or_make(path, _maker(bfv_secret))
    assert path.is_file()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_secret_key_is_never_written_to_the_shared_temporary_folder(
    tmp_path: Path, bfv_secret: SecretContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    written: list[Path] = []
    real_replace = os.replace

    def recording_replace(src: str, dst: Path) -> None:
        written.append(Path(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    load_or_make(state / KEYMAKER_FILE, _maker(bfv_secret))
    # the bytes were written next to their final place, then renamed into it
    assert [p.parent for p in written] == [state]
    assert list(shared.iterdir()) == []
    assert [p.name for p in state.iterdir()] == [KEYMAKER_FILE]


def test_a_failed_write_leaves_no_copy_of_the_key_and_reports_the_failure(
    tmp_path: Path, bfv_secret: SecretContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        load_or_make(tmp_path / KEYMAKER_FILE, _maker(bfv_secret))
    assert list(tmp_path.iterdir()) == []


class _Interrupted(Exception):
    """Stands for a signal arriving just after the rename."""


def test_an_interruption_after_the_rename_is_reported_as_itself(
    tmp_path: Path, bfv_secret: SecretContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The temporary file is gone once renamed: the clean-up must not replace the
    # real failure by a FileNotFoundError of its own.
    real_replace = os.replace

    def replace_then_interrupt(src: str, dst: Path) -> None:
        real_replace(src, dst)
        raise _Interrupted

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    with pytest.raises(_Interrupted):
        load_or_make(tmp_path / KEYMAKER_FILE, _maker(bfv_secret))
    assert [p.name for p in tmp_path.iterdir()] == [KEYMAKER_FILE]
