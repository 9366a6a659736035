"""The HTML report embeds the audit data and plots exactly the records' ε values."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from reports_fixtures import Federation

from securefl.cli.audit import audit as audit_command
from securefl.reports import audit
from securefl.reports.html import epsilon_svg

CHROMIUM = Path("/usr/bin/chromium")
SVG_NS = "{http://www.w3.org/2000/svg}"


def _path_vertices(svg: str, gid: str) -> list[tuple[float, float]]:
    root = ET.fromstring(svg)
    group = next(el for el in root.iter(f"{SVG_NS}g") if el.get("id") == gid)
    path = next(group.iter(f"{SVG_NS}path"))
    nums = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", path.get("d", ""))]
    return list(zip(nums[::2], nums[1::2], strict=True))


def test_html_report_embeds_the_audit_json(federation: Federation, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(audit_command, [str(federation.root), "--html", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    blob = re.search(r'<script type="application/json" id="audit-data">(.*?)</script>', html, re.S)
    assert blob is not None
    data = json.loads(blob.group(1))
    claimed = {(r["site"], r["round_id"]): r["claimed"] for r in data["rounds"]}
    for site in ("alpha", "beta"):
        for rec in federation.lines(site):
            assert claimed[(site, rec["round_id"])] == rec["epsilon"]
    assert "PASSED" in html and "<svg" in html


def test_plotted_points_are_the_records_epsilons(federation: Federation) -> None:
    report = audit([federation.root])
    svg = epsilon_svg(report)
    for site in ("alpha", "beta"):
        rows = report.site_rounds(site)
        values: list[float] = []
        pixels: list[tuple[float, float]] = []
        for name, attr in (
            ("claimed", "claimed"),
            ("recomputed", "recomputed"),
            ("pld", "independent"),
        ):
            verts = _path_vertices(svg, f"eps-{site}-{name}")
            assert len(verts) == len(rows)
            values += [getattr(r, attr) for r in rows]
            pixels += verts
        # x pixels follow the round ids; y pixels are one affine map of ε for the whole axes.
        xs = [p[0] for p in pixels[: len(rows)]]
        assert xs == sorted(xs) and len(set(xs)) == len(rows)
        a, b = np.polyfit(values, [p[1] for p in pixels], 1)
        assert a < 0  # SVG y grows downwards
        residual = np.abs(a * np.array(values) + b - np.array([p[1] for p in pixels]))
        assert residual.max() < 0.05  # pixels; a plot of other numbers would be far off
        budget = _path_vertices(svg, f"budget-{site}")
        assert budget[0][1] == pytest.approx(a * rows[0].budget + b, abs=0.05)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="headless Chromium not installed (/usr/bin/chromium)"
)
def test_html_report_renders_in_headless_chromium(federation: Federation, tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "report.html"
    CliRunner().invoke(audit_command, [str(federation.root), "--html", str(out)])
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,1600",
            f"--screenshot={shot}",
            out.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    data = shot.read_bytes()
    assert _png_size(data) == (1200, 1600)
    image = Image.open(shot).convert("RGB")
    pixels = np.asarray(image).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 50  # text, plots and tables, not a blank page
    # The green PASSED badge (#2e7d32) is drawn.
    assert np.any(np.all(np.abs(pixels.astype(int) - [0x2E, 0x7D, 0x32]) <= 2, axis=1))
    # The plot's lines are drawn: matplotlib's default blue (#1f77b4) appears.
    assert np.any(np.all(np.abs(pixels.astype(int) - [0x1F, 0x77, 0xB4]) <= 6, axis=1))
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
