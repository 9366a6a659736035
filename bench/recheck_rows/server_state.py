"""Removal entries for the claim rows of ``threat_models/server_state.md``."""

from __future__ import annotations

from ._common import (  # noqa: F401
    _STATE,
    Removal,
    Row,
    _off,
)

ROWS: tuple[Row, ...] = (
    Row(
        "state-checkpoint-hash",
        "server_state.md",
        "A checkpoint (model, strategy state, or an he aggregate)",
        (_off(_STATE, "sha256_hex(raw) != sha256"),),
    ),
    Row(
        "state-other-federation",
        "server_state.md",
        "A restart is refused on a folder of another federation",
        (_off(_STATE, "first.get(key) != want"),),
    ),
    Row(
        "state-journal-lines",
        "server_state.md",
        "A torn last journal line",
        (
            _off(
                "securefl/runtime/journal.py",
                'obj["sha256"] != _line_hash(body, prev) or canonical_bytes(obj) != raw',
            ),
        ),
    ),
)
