"""A provisioned mask federation of three sites on 127.0.0.1, and helpers to run its parties.

Kits are provisioned once per session; each test gets a private copy (the
runs write their state folders into the kits).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from securefl.provision import provision

ROOT = Path(__file__).resolve().parents[2]
SITES = ("site-a", "site-b", "site-c")
FEATURES = 8

FED_TOML = """
[federation]
name = "ward"
secure = "mask"
[server]
hosts = ["localhost", "127.0.0.1"]
bind = "127.0.0.1"
[model]
features = 8
classes = 2
[dp]
epsilon = 4.0
batch_size = 16
[rounds]
max_rounds = 2
min_sites = 3
max_weight = 1000
stage_timeout_seconds = 60
[[sites]]
name = "site-a"
[[sites]]
name = "site-b"
[[sites]]
name = "site-c"
"""


@pytest.fixture(scope="session")
def deploy_provisioned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deploy")
    (root / "fed.toml").write_text(FED_TOML, encoding="utf-8")
    provision(root / "fed.toml", root / "kits")
    return root


@pytest.fixture
def kits(deploy_provisioned: Path, tmp_path: Path) -> Path:
    """A private copy of the provisioned kits (modes preserved)."""
    shutil.copytree(deploy_provisioned / "kits", tmp_path / "kits")
    return tmp_path / "kits"


def securefl(*args: object) -> list[str]:
    """``securefl ARGS`` run by this interpreter, importing this checkout."""
    return [sys.executable, "-m", "securefl", *map(str, args)]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def wait_for_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """The content of ``path`` once written; fails if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the process exited ({proc.returncode}) before writing {path}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} was not written within {timeout} s")
        time.sleep(0.1)
    return path.read_text(encoding="utf-8").strip()


def write_site_csv(path: Path, seed: int, rows: int = 120) -> Path:
    """A numeric CSV with FEATURES columns and a 0/1 ``outcome`` column."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    header = ",".join([*(f"f{i}" for i in range(FEATURES)), "outcome"])
    lines = [header] + [
        ",".join([*(f"{v:.5f}" for v in xi), str(yi)]) for xi, yi in zip(x, y, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
