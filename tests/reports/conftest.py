"""Fixtures of the reports tests (helpers live in reports_fixtures.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reports_fixtures import Federation, build


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    """Two sites, three honest rounds each, claims under RDP (fast)."""
    return build(tmp_path / "fed", {"alpha": 640, "beta": 1280})


@pytest.fixture
def builder(tmp_path: Path) -> Callable[..., Federation]:
    def make(sites: dict[str, int], **kwargs: Any) -> Federation:
        return build(tmp_path / "custom", sites, **kwargs)

    return make
