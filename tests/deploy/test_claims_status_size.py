"""`securefl status` reads at most 1 MiB of an answer, even from the federation's own server.

A server holding the pinned certificate (a compromised or buggy one) can
answer `/status` with anything. The status command must stop reading past
``MAX_STATUS_BYTES`` and refuse the answer, not take in a body of any size.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from securefl.deploy.server import build_server
from securefl.deploy.status import MAX_STATUS_BYTES, fetch_status
from securefl.errors import TransportError


def test_status_refuses_an_answer_over_one_mebibyte_from_the_pinned_server(kits: Path):
    server = build_server(kits / "server", host="127.0.0.1", port=0)
    honest = server.transport.status.snapshot
    padded = {**honest(), "note": "x" * (4 * MAX_STATUS_BYTES)}
    server.transport.status.snapshot = lambda: padded  # type: ignore[method-assign]
    server.http.start()
    url = f"https://127.0.0.1:{server.port}"
    try:
        with pytest.raises(TransportError):
            fetch_status(kits / "site-a", url)
        server.transport.status.snapshot = honest  # type: ignore[method-assign]
        assert fetch_status(kits / "site-a", url)["federation"] == "ward"
    finally:
        server.transport.close()
        server.http.stop()
