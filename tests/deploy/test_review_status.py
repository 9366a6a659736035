"""Adversarial review of ``securefl status``: an impostor with a CA-issued certificate.

``securefl client`` refuses a server certificate other than the one the
signed roster pins, even one the federation CA issued for the server's name
(whoever holds the CA key, or a leaked one). ``securefl status`` with the
same kit must not believe such a server either: it would show the hospital
a round, a stage and the ε of every site that the impostor made up.
"""

from pathlib import Path
from typing import Any

import pytest

from securefl.deploy.status import fetch_status
from securefl.errors import TransportError


def test_status_refuses_a_ca_issued_server_certificate_the_roster_does_not_pin(
    kits: Path, impostor: tuple[Any, int]
):
    _, port = impostor
    with pytest.raises(TransportError):
        fetch_status(kits / "site-a", f"https://127.0.0.1:{port}")
