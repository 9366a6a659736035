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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


DISTRIBUTED_TOML = """
[federation]
name = "ward"
secure = "mask"
privacy = "distributed"
[distributed]
sample_rate = 0.1
records = 300
[server]
hosts = ["localhost", "127.0.0.1"]
bind = "127.0.0.1"
[model]
features = 8
classes = 2
[dp]
epsilon = 4.0
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
def distributed_provisioned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("distributed")
    (root / "fed.toml").write_text(DISTRIBUTED_TOML, encoding="utf-8")
    provision(root / "fed.toml", root / "kits")
    return root


@pytest.fixture
def distributed_kits(distributed_provisioned: Path, tmp_path: Path) -> Path:
    """A private copy of the kits of a privacy = "distributed" federation."""
    shutil.copytree(distributed_provisioned / "kits", tmp_path / "kits")
    return tmp_path / "kits"


NEIGHBOURHOOD_SITES = tuple(f"site-{c}" for c in "abcdef")
#: Six sites on the k-regular graph (complete_graph_max = 5 lets so few leave the complete
#: graph; with no dropouts or colluders to size for, k = 4 and t = 3), in the neighbourhood
#: round: each site's consistency signature is BLS, checked as one aggregate against the
#: roster's BLS keys.
NEIGHBOURHOOD_TOML = """
[federation]
name = "ring"
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
max_rounds = 1
min_sites = 6
max_weight = 1000
stage_timeout_seconds = 120
[mask]
neighbourhood = true
complete_graph_max = 5
dropout_rate = 0.0
corrupt_rate = 0.0
""" + "".join(f'[[sites]]\nname = "{n}"\n' for n in NEIGHBOURHOOD_SITES)


@pytest.fixture(scope="session")
def neighbourhood_provisioned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("neighbourhood")
    (root / "fed.toml").write_text(NEIGHBOURHOOD_TOML, encoding="utf-8")
    provision(root / "fed.toml", root / "kits")
    return root


@pytest.fixture
def neighbourhood_kits(neighbourhood_provisioned: Path, tmp_path: Path) -> Path:
    """A private copy of the kits of a federation running the neighbourhood round."""
    shutil.copytree(neighbourhood_provisioned / "kits", tmp_path / "kits")
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


@pytest.fixture
def impostor(kits: Path, tmp_path: Path) -> Iterator[tuple[Any, int]]:
    """A server with a second certificate the federation CA issued for the server's name.

    Whoever holds the CA key (or a leaked copy) can make one; only the roster's
    pin on the server certificate tells it from the real server. Yields the
    impostor's transport and its port on 127.0.0.1.
    """
    from cryptography.hazmat.primitives.serialization import Encoding

    from securefl.provision.kit import Kit
    from securefl.provision.pki import (
        CertificateAuthority,
        issue_server_cert,
        new_key,
        write_private_key,
        write_public,
    )
    from securefl.transport._uvicorn import serve_files

    server_kit = Kit.load(kits / "server")
    key = new_key()
    cert = issue_server_cert(
        CertificateAuthority.load(kits / "ca"),
        key.public_key(),
        hosts=["localhost", "127.0.0.1"],
        days=30,
    )
    write_private_key(tmp_path / "other.key.pem", key)
    write_public(tmp_path / "other.cert.pem", cert.public_bytes(Encoding.PEM))
    roster = server_kit.roster
    transport, running = serve_files(
        federation=server_kit.federation.name,
        ca=server_kit.ca_cert_path,
        cert=tmp_path / "other.cert.pem",
        key=tmp_path / "other.key.pem",
        crl=server_kit.crl_path,
        identity_key=server_kit.path / "identity.key.pem",
        site_keys={n: roster.identity_keys()[n] for n in roster.site_names},
        site_cert_sha256={n: roster.cert_sha256(n) for n in roster.site_names},
        max_body=1 << 20,
    )
    running.start()
    try:
        yield transport, running.port
    finally:
        transport.close()
        running.stop()
