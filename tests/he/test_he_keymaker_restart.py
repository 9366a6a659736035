"""The keymaker keeps its HE keys in its state folder: a restart never makes new ones.

A keymaker that made a fresh key set after a restart would hand the server a
second public context mid-run, which every other site refuses, and could not
decrypt its own run's aggregates. So the keys are saved owner-only before they
leave, and a restarted keymaker sends the very same key material again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from securefl.config import StrategyConfig
from securefl.errors import ConfigError
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.sign import SigningKey
from securefl.he._keymaker_store import KEYMAKER_FILE
from securefl.modes import HESiteKeys, he_site_keys

SITES = ("site-a", "site-b", "site-c")
SIGNING = {n: SigningKey.generate() for n in SITES}
EXCHANGE = {n: KeyPair.generate() for n in SITES}


def _keys(state: Path, site: str = "site-a") -> HESiteKeys:
    return he_site_keys(
        name=site,
        signing_key=SIGNING[site],
        exchange_key=EXCHANGE[site],
        identity_keys={n: k.public_bytes() for n, k in SIGNING.items()},
        exchange_keys={n: k.public_bytes() for n, k in EXCHANGE.items()},
        state_dir=state,
        federation="ward",
        strategy=StrategyConfig(),
        max_weight=10.0,
        min_sites=3,
        keymaker="site-a",
    )


def test_a_restarted_keymaker_sends_the_same_keys_and_holds_the_same_secret(
    tmp_path: Path,
) -> None:
    first, half = _keys(tmp_path).hello()
    assert half is not None
    saved = tmp_path / KEYMAKER_FILE
    assert saved.is_file() and (saved.stat().st_mode & 0o777) == 0o600
    again, half_again = _keys(tmp_path).hello()  # a new process on the same state folder
    assert half_again is not None
    assert [e.payload for e in again] == [e.payload for e in first]  # byte-identical keys
    assert half_again.mode.context.key_id == half.mode.context.key_id  # type: ignore[attr-defined]
    other, _ = _keys(tmp_path / "elsewhere").hello()  # a fresh state folder: fresh keys
    assert other[0].payload != first[0].payload


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_keymaker_state_file_others_may_read_is_refused(tmp_path: Path) -> None:
    _keys(tmp_path).hello()
    (tmp_path / KEYMAKER_FILE).chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        _keys(tmp_path).hello()
