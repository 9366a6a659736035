"""The status page, fetched over mutual TLS with the token, renders in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from securefl.transport.signed import seal
from securefl.wire import Envelope

CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium not installed")
def test_status_page_renders_with_connected_and_absent_sites(fed, tmp_path):
    from PIL import Image

    a = fed.pki.sites["site-a"]
    hello = Envelope(
        federation="fed",
        round=0,
        stage="fed/hello",
        sender="site-a",
        receiver="server",
        payload=b"",
    )
    assert fed.raw(a).post("/v1/send", content=seal(hello, a.identity)).status_code == 202
    page = fed.raw(a).get("/", headers={"Authorization": f"Bearer {fed.pki.status_token}"})
    assert page.status_code == 200 and "<meta http-equiv='refresh'" in page.text
    out = tmp_path / "status.html"
    out.write_text(page.text, encoding="utf-8")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=900,500",
            f"--screenshot={shot}",
            out.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    assert len(np.unique(pixels, axis=0)) > 20  # text and a table, not a blank page
    # site-a is connected (green "yes"), site-b never came (red "no")
    assert np.any(np.all(np.abs(pixels - [0x2E, 0x7D, 0x32]) <= 8, axis=1))
    assert np.any(np.all(np.abs(pixels - [0xC6, 0x28, 0x28]) <= 8, axis=1))
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
