"""Adversarial review of a site's state folder: a hostile local user and the privacy ledger.

The ledger is plain SQLite: whoever can write the state folder can delete it
or replace it with one that has spent nothing, and the site would train again
on a budget it already used. So the folder must be the site's own.
"""

import os
import stat
from pathlib import Path

import pytest

from securefl.deploy.site import site_from_kit
from securefl.errors import ConfigError
from securefl.transport.memory import MemoryHub


def _others_can_write(path: Path) -> bool:
    return bool(stat.S_IMODE(path.stat().st_mode) & 0o002)


def test_a_new_state_folder_is_not_writable_by_other_users_whatever_the_umask(kits: Path):
    """Under umask 000 (some service managers and containers) the folder was 0777,
    and the ledger in it 0666: any local user could reset the site's spent ε."""
    old = os.umask(0)
    try:
        site = site_from_kit(kits / "site-a", transport=MemoryHub().connect("site-a"))
    finally:
        os.umask(old)
    state = kits / "site-a" / "state"
    assert not _others_can_write(state)
    assert not _others_can_write(state / "records")
    assert not _others_can_write(site.ledger.path)


def test_a_state_folder_other_users_can_write_is_refused(kits: Path):
    """A reused state folder any user may change is refused before the ledger is opened."""
    state = kits / "site-a" / "state"
    state.mkdir()
    state.chmod(0o777)
    with pytest.raises(ConfigError, match="state"):
        site_from_kit(kits / "site-a", transport=MemoryHub().connect("site-a"))
    assert not (state / "ledger.sqlite").exists()
