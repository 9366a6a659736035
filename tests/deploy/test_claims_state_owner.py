"""A state folder another local user owns is refused before the site opens its ledger.

Whoever owns the folder can chmod it and replace the ledger (plain SQLite)
with one that has spent nothing. The site must not take such a folder even
when its mode looks private. The other owner is played by the folder's
owner id differing from the process's (as root the folder is really given
away; otherwise the process's uid is shifted by one for the call).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from securefl.deploy.site import site_from_kit
from securefl.errors import ConfigError
from securefl.transport.memory import MemoryHub


@pytest.mark.skipif(os.name != "posix", reason="file ownership is POSIX")
def test_a_state_folder_another_user_owns_is_refused_before_the_ledger_is_opened(
    kits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = kits / "site-a" / "state"
    state.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(state, 65534, 65534)  # nobody's folder, mode 0700: private, but not ours
    else:
        real = os.getuid()
        monkeypatch.setattr(os, "getuid", lambda: real + 1)
    with pytest.raises(ConfigError, match="state"):
        site_from_kit(kits / "site-a", transport=MemoryHub().connect("site-a"))
    assert not (state / "ledger.sqlite").exists()
    assert not (state / "records").exists()
