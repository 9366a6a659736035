"""``securefl server``'s builder: roster admission over real TLS, the he key gate, its state.

Each test builds the server from a provisioned kit (port 0 on 127.0.0.1) and
speaks raw HTTP to it, as a hostile client would.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, child_env

from securefl.deploy.server import build_server
from securefl.errors import ConfigError
from securefl.hazmat.sign import SigningKey
from securefl.provision import provision
from securefl.provision.kit import Kit
from securefl.reports.server_log import SERVER_LOG_NAME, ServerLogWriter, dp_policy
from securefl.transport.signed import seal
from securefl.wire import SERVER, Envelope


def _raw(url: str, kit: Path) -> httpx.Client:
    """A client presenting ``kit``'s certificate, trusting the kit's CA."""
    ctx = ssl.create_default_context(cafile=str(kit / "ca.cert.pem"))
    ctx.load_cert_chain(str(kit / "tls.cert.pem"), str(kit / "tls.key.pem"))
    return httpx.Client(base_url=url, verify=ctx, timeout=10, trust_env=False)


def _hello(fed: str, sender: str, stage: str = "fed/hello", rnd: int = 0) -> Envelope:
    return Envelope(
        federation=fed, round=rnd, stage=stage, sender=sender, receiver=SERVER, payload=b""
    )


def test_the_deployed_server_takes_only_roster_members_with_their_roster_keys(kits: Path):
    server = build_server(kits / "server", host="127.0.0.1", port=0)
    server.http.start()
    fed = server.kit.federation.name
    own = Kit.load(kits / "site-a").signing_key()
    b_key = Kit.load(kits / "site-b").signing_key()
    try:
        with _raw(f"https://127.0.0.1:{server.port}", kits / "site-a") as client:
            # site-a's certificate, but an identity key the roster does not list for it
            forged = seal(_hello(fed, "site-a"), SigningKey.generate())
            assert client.post("/v1/send", content=forged).status_code == 401
            # site-a's certificate, claiming to be site-b (even signed with b's key)
            claimed = seal(_hello(fed, "site-b"), b_key)
            assert client.post("/v1/send", content=claimed).status_code == 403
            # a stage that is not open is refused before the driver sees it
            early = seal(_hello(fed, "site-a", "mask/advertise", 1), own)
            assert client.post("/v1/send", content=early).status_code == 409
            assert server.transport.receive(timeout=0.2) is None  # nothing reached the driver
            genuine = seal(_hello(fed, "site-a"), own)
            assert client.post("/v1/send", content=genuine).status_code == 202
        env = server.transport.receive(timeout=5)
        assert env is not None and env.sender == "site-a"
        server.driver.handle(env)
        assert server.driver.present == ["site-a"]
    finally:
        server.transport.close()
        server.http.stop()


HE_TOML = """
[federation]
name = "he-ward"
secure = "he"
[server]
hosts = ["localhost", "127.0.0.1"]
bind = "127.0.0.1"
[model]
features = 4
classes = 2
[rounds]
max_rounds = 1
min_sites = 3
max_weight = 100
[[sites]]
name = "site-a"
[[sites]]
name = "site-b"
[[sites]]
name = "site-c"
"""


def test_the_he_key_stage_passes_the_round_gate_before_round_one(tmp_path: Path):
    """The keymaker's keys come at round 0; a gate that refused them would stall he forever."""
    (tmp_path / "fed.toml").write_text(HE_TOML, encoding="utf-8")
    provision(tmp_path / "fed.toml", tmp_path / "kits")
    kits = tmp_path / "kits"
    server = build_server(kits / "server", host="127.0.0.1", port=0)
    server.http.start()
    try:
        key = Kit.load(kits / "site-a").signing_key()
        with _raw(f"https://127.0.0.1:{server.port}", kits / "site-a") as client:
            keys = seal(_hello("he-ward", "site-a", "he/keys"), key)
            assert client.post("/v1/send", content=keys).status_code == 202
            other = seal(_hello("he-ward", "site-a", "he/other"), key)
            assert client.post("/v1/send", content=other).status_code == 409
    finally:
        server.transport.close()
        server.http.stop()


def test_a_state_folder_of_a_finished_run_is_not_reused(kits: Path):
    kit = Kit.load(kits / "server")
    kit.state_dir.mkdir()
    writer = ServerLogWriter(
        kit.state_dir / SERVER_LOG_NAME,
        federation=kit.federation.name,
        signing_key=kit.signing_key(),
    )
    policy = dp_policy(
        epsilon=4.0, delta=1e-5, accountant="prv", local_epochs=1, max_grad_norm=1.0,
        batch_size=16, noise_multiplier=None, max_rounds=2,
    )  # fmt: skip
    writer.close(reason="done", max_weight=1000.0, min_sites=3, dp=policy)
    with pytest.raises(ConfigError, match="finished run"):
        build_server(kits / "server", host="127.0.0.1", port=0)


def test_each_command_refuses_the_other_partys_kit(kits: Path):
    from securefl.deploy.site import site_from_kit

    with pytest.raises(ConfigError, match="site kit"):
        build_server(kits / "site-a", port=0)
    with pytest.raises(ConfigError, match="server kit"):
        site_from_kit(kits / "server")


@pytest.mark.parametrize("which", ["kits", "distributed_kits"])
def test_the_server_command_and_builder_never_import_torch(
    which: str, request: pytest.FixtureRequest
):
    """A coordinator needs no GPU stack: `securefl server` builds its whole server without torch.

    Also with ``privacy = "distributed"`` (its plan, μ's calibration and the integer path).
    """
    kits: Path = request.getfixturevalue(which)
    code = textwrap.dedent(
        f"""
        import sys
        from click.testing import CliRunner
        from securefl.cli import cli
        result = CliRunner().invoke(cli, ["server", "--help"])
        assert result.exit_code == 0, result.output
        from securefl.deploy.server import build_server
        server = build_server({str(kits / "server")!r}, host="127.0.0.1", port=0)
        server.http.start()
        server.http.stop()
        assert "torch" not in sys.modules, "torch was imported"
        assert "opacus" not in sys.modules, "opacus was imported"
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(),
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "ok"


def test_status_with_a_site_kit_shows_the_servers_view(kits: Path):
    import json

    from click.testing import CliRunner

    from securefl.cli import cli

    server = build_server(kits / "server", host="127.0.0.1", port=0)
    server.http.start()
    url = f"https://127.0.0.1:{server.port}"
    runner = CliRunner()
    try:
        as_json = runner.invoke(cli, ["status", url, "--kit", str(kits / "site-a"), "--json"])
        assert as_json.exit_code == 0, as_json.output
        data = json.loads(as_json.output)
        assert data["federation"] == "ward" and data["round"] == 0
        assert sorted(data["sites"]) == ["site-a", "site-b", "site-c"]
        assert data["sites"]["site-a"]["connected"] is True  # the status request itself
        table = runner.invoke(cli, ["status", url, "--kit", str(kits / "site-b")])
        assert table.exit_code == 0 and "site-c" in table.output and "round 0" in table.output
        refused = runner.invoke(cli, ["status", url, "--kit", str(kits / "server")])
        assert refused.exit_code == 2 and "needs a site kit" in refused.output
    finally:
        server.transport.close()
        server.http.stop()
    gone = runner.invoke(cli, ["status", url, "--kit", str(kits / "site-a")])
    assert gone.exit_code == 7 and "Traceback" not in gone.output
