"""One provisioned federation per test session, copied for tests that change it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from securefl.provision import provision

FED_TOML = """
[federation]
name = "oncology"
secure = "mask"
[server]
hosts = ["coordinator.localhost", "127.0.0.1", "::1"]
port = 8443
[rounds]
max_weight = 1000
[pki]
cert_days = 30
ca_days = 365
[[sites]]
name = "site-a"
[[sites]]
name = "site-b"
[[sites]]
name = "site-c"
"""


@pytest.fixture(scope="session")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A federation of three sites, provisioned once (read-only for tests)."""
    root = tmp_path_factory.mktemp("federation")
    (root / "fed.toml").write_text(FED_TOML, encoding="utf-8")
    provision(root / "fed.toml", root / "kits")
    return root


@pytest.fixture
def federation(provisioned: Path, tmp_path: Path) -> Path:
    """A private copy of the provisioned federation (modes preserved) a test may change."""
    shutil.copytree(provisioned, tmp_path / "fed", symlinks=False)
    return tmp_path / "fed"
