"""A site's persistent record of the (federation, round) ids it has masked under.

Why: the pairwise mask seeds are derived from fresh keys *and* the round id,
and a self-mask seed is used once; but a site that masked two different
updates under one round id (say after a crash and a replayed round start)
would hand the server two messages whose difference leaks. So a round id is
written to disk, atomically and fsynced, *before* anything masked under it
leaves the site, and a second use is refused, also after a restart.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from securefl.errors import AbortError, DataError

__all__ = ["RoundLog"]

_VERSION = 1


class RoundLog:
    """Round ids already used by one site, persisted in a small JSON file."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)

    def _load(self) -> set[tuple[str, int]]:
        if not self._path.exists():
            return set()
        try:
            obj = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{self._path}: unreadable mask round log: {exc}") from None
        if (
            not isinstance(obj, dict)
            or obj.get("v") != _VERSION
            or not isinstance(obj.get("used"), list)
        ):
            raise DataError(f"{self._path}: not a mask round log")
        used: set[tuple[str, int]] = set()
        for item in obj["used"]:
            if (
                not isinstance(item, list)
                or len(item) != 2
                or not isinstance(item[0], str)
                or not isinstance(item[1], int)
            ):
                raise DataError(f"{self._path}: malformed entry {item!r}")
            used.add((item[0], item[1]))
        return used

    def used(self, federation: str, round_id: int) -> bool:
        """True if this site already masked under ``(federation, round_id)``."""
        return (federation, round_id) in self._load()

    def claim(self, federation: str, round_id: int) -> None:
        """Record the round id durably; refuse (:class:`AbortError`) if it was used before."""
        used = self._load()
        if (federation, round_id) in used:
            raise AbortError(
                f"round {round_id} of {federation!r} was already masked under; refusing reuse"
            )
        used.add((federation, round_id))
        body = json.dumps({"v": _VERSION, "used": sorted([f, r] for f, r in used)})
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
