"""Adversarial review of ``securefl status``: an impostor with a CA-issued certificate.

``securefl client`` refuses a server certificate other than the one the
signed roster pins, even one the federation CA issued for the server's name
(whoever holds the CA key, or a leaked one). ``securefl status`` with the
same kit must not believe such a server either: it would show the hospital
a round, a stage and the ε of every site that the impostor made up.
"""

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from securefl.deploy.status import fetch_status
from securefl.errors import TransportError
from securefl.provision.kit import Kit
from securefl.provision.pki import (
    CertificateAuthority,
    issue_server_cert,
    new_key,
    write_private_key,
    write_public,
)
from securefl.transport.https_server import serve_files


def test_status_refuses_a_ca_issued_server_certificate_the_roster_does_not_pin(
    kits: Path, tmp_path: Path
):
    server_kit = Kit.load(kits / "server")
    ca = CertificateAuthority.load(kits / "ca")
    key = new_key()
    cert = issue_server_cert(ca, key.public_key(), hosts=["localhost", "127.0.0.1"], days=30)
    write_private_key(tmp_path / "other.key.pem", key)
    write_public(tmp_path / "other.cert.pem", cert.public_bytes(Encoding.PEM))
    roster = server_kit.roster
    impostor, running = serve_files(
        federation="ward",
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
        with pytest.raises(TransportError):
            fetch_status(kits / "site-a", f"https://127.0.0.1:{running.port}")
    finally:
        impostor.close()
        running.stop()
