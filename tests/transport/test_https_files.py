"""The server runs from a kit's files, and the transport never imports torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
from transport_pki import Pki

from securefl.errors import ConfigError
from securefl.transport._files import load_signing_key
from securefl.transport.https_client import HttpsSiteTransport
from securefl.transport.https_server import body_limit, serve_files
from securefl.wire import Envelope


def test_server_runs_from_kit_files(tmp_path):
    pki = Pki.make(tmp_path)
    kit = tmp_path / "server"
    transport, server = serve_files(
        federation="fed",
        ca=kit / "ca.cert.pem",
        cert=kit / "tls.cert.pem",
        key=kit / "tls.key.pem",
        crl=kit / "crl.pem",
        identity_key=kit / "identity.key.pem",
        site_keys={n: p.identity.public_bytes() for n, p in pki.sites.items()},
        site_cert_sha256=pki.fingerprints(),
        max_body=body_limit(dimension=1000, mode="mask"),
        status_token=kit / "status.token",
    )
    server.start()
    a = pki.sites["site-a"]
    site = HttpsSiteTransport(
        name="site-a",
        server_url=f"https://127.0.0.1:{server.port}",
        server_name="localhost",
        ca=a.folder / "ca.cert.pem",
        cert=a.folder / "tls.cert.pem",
        key=a.folder / "tls.key.pem",
        signing_key=load_signing_key(a.folder / "identity.key.pem"),
        server_key=pki.server.identity.public_bytes(),
    )
    try:
        env = Envelope(
            federation="fed",
            round=0,
            stage="fed/hello",
            sender="site-a",
            receiver="server",
            payload=b"",
        )
        site.send(env)
        assert transport.receive(timeout=5) == env
        reply = Envelope(
            federation="fed",
            round=0,
            stage="fed/x",
            sender="server",
            receiver="site-a",
            payload=b"1",
        )
        transport.send(reply)  # sealed with the identity key read from the kit
        assert site.receive(timeout=5) == reply
    finally:
        site.close()
        transport.close()
        server.stop()


def test_identity_key_must_be_ed25519(tmp_path):
    pki = Pki.make(tmp_path)
    with pytest.raises(ConfigError, match="Ed25519"):
        load_signing_key(pki.server.key_path)  # the ECDSA TLS key is not an identity key
    with pytest.raises(ConfigError, match="PEM"):
        load_signing_key(pki.server.cert_path)


def test_server_and_site_transports_do_not_import_torch():
    code = (
        "import sys\n"
        "import securefl.transport.https_server, securefl.transport.https_client\n"
        "import securefl.transport.signed\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
