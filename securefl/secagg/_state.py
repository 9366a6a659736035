"""A site's persistent record of the (federation, run, round) ids it has masked under.

Why: the pairwise mask seeds are derived from fresh keys *and* the round id,
and a self-mask seed is used once; but a site that masked two different
updates under one round id (say after a crash and a replayed round start)
would hand the server two messages whose difference leaks. So a round id is
written to disk, atomically and fsynced, *before* anything masked under it
leaves the site, and a second use is refused, also after a restart.

A round is named by (federation, run, round): a server keeps its run id
across restarts and never repeats a round number within a run, while a new
run may count from 1 again. Version 1 files kept (federation, round) only;
their entries are read as run ``""`` and rewritten as version 2 on the next
claim, never dropped.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from securefl.errors import AbortError, DataError

__all__ = ["RoundLog"]

_VERSION = 2
_Key = tuple[str, str, int]


class RoundLog:
    """Round ids already used by one site, persisted in a small JSON file."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)

    def _load(self) -> set[_Key]:
        if not self._path.exists():
            return set()
        try:
            obj = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{self._path}: unreadable mask round log: {exc}") from None
        version = obj.get("v") if isinstance(obj, dict) else None
        if version not in (1, _VERSION) or not isinstance(obj.get("used"), list):
            raise DataError(f"{self._path}: not a mask round log")
        width = 2 if version == 1 else 3
        used: set[_Key] = set()
        for item in obj["used"]:
            if (
                not isinstance(item, list)
                or len(item) != width
                or not all(isinstance(x, str) for x in item[:-1])
                or isinstance(item[-1], bool)
                or not isinstance(item[-1], int)
            ):
                raise DataError(f"{self._path}: malformed entry {item!r}")
            used.add((item[0], item[1] if width == 3 else "", item[-1]))
        return used

    def used(self, federation: str, round_id: int, run: str = "") -> bool:
        """True if this site already masked under ``(federation, run, round_id)``."""
        return (federation, run, round_id) in self._load()

    def claim(self, federation: str, round_id: int, run: str = "") -> None:
        """Record the round durably; refuse (:class:`AbortError`) if it was used before."""
        used = self._load()
        if (federation, run, round_id) in used:
            of_run = f" of run {run[:12]}" if run else ""
            raise AbortError(
                f"round {round_id}{of_run} of {federation!r} was already masked under; "
                "refusing reuse"
            )
        used.add((federation, run, round_id))
        body = json.dumps({"v": _VERSION, "used": sorted([f, u, r] for f, u, r in used)})
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".mask-rounds-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
