"""``securefl server`` on a state folder it did not write: refused with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from securefl.cli import cli
from securefl.deploy.server import build_server
from securefl.errors import ConfigError
from securefl.params import ParamSpec
from securefl.provision.kit import Kit
from securefl.runtime.server_state import ServerState


def test_a_restart_on_another_federations_folder_is_refused(kits: Path) -> None:
    kit = Kit.load(kits / "server", kind="server")
    ServerState(kit.state_dir, federation="another", mode="mask", spec=kit.spec)
    with pytest.raises(ConfigError, match="holds federation 'another'"):
        build_server(kits / "server", host="127.0.0.1", port=0)
    result = CliRunner().invoke(cli, ["server", "--kit", str(kits / "server"), "--port", "0"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "holds federation 'another'" in lines[-1]


def test_a_restart_after_the_kit_model_changed_is_refused(kits: Path) -> None:
    kit = Kit.load(kits / "server", kind="server")
    other = ParamSpec(names=("w",), shapes=((3,),), dtypes=("float32",))
    ServerState(kit.state_dir, federation=kit.federation.name, mode="mask", spec=other)
    with pytest.raises(ConfigError, match="holds spec"):
        build_server(kits / "server", host="127.0.0.1", port=0)


def test_the_server_keeps_its_run_id_across_builds(kits: Path) -> None:
    runs = []
    for _ in range(2):
        server = build_server(kits / "server", host="127.0.0.1", port=0)
        server.transport.close()
        server.http.stop()
        runs.append(server.driver.run_id)
        assert server.state.run_id == server.driver.run_id
    assert runs[0] == runs[1]
    assert (kits / "server" / "state" / "journal.jsonl").exists()
