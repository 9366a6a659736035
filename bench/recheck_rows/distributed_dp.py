"""Removal entries for the claim rows of ``threat_models/distributed_dp.md``."""

from __future__ import annotations

from ._common import Removal, Row, _off  # noqa: F401

ROWS: tuple[Row, ...] = ()
