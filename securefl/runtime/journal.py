"""An append-only, self-checking journal file, and atomic file replacement.

Why a journal: a server killed at any instant must come back knowing exactly
which rounds completed, which round ids it has used and which checkpoint
holds its model. Each line is one JSON object::

    {"body": {...}, "prev": "<sha256 of the line before>", "sha256": "<sha256 of body+prev>"}

so a line vouches for itself and for its place in the file. A line is
appended with one ``write`` and fsynced before the caller acts on it; the
directory is fsynced when the file is created.

What a crash can leave, and what opening does about it:

- a torn tail (a crash mid-append: the last line has no newline, or is the
  last line and fails its check): logged, cut off, and the file truncated to
  the valid prefix, because the append it belongs to never returned;
- any damaged line *before* the tail (disk corruption, an edit): refused with
  :class:`~securefl.errors.IntegrityError`. Skipping it would silently forget
  a completed round or a used round id.

:func:`write_atomic` is the other half: a file that is either its old or its
new content after any crash (tmp file, fsync, ``os.replace``, fsync of the
directory).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from securefl.errors import IntegrityError
from securefl.reports._canonical import canonical_bytes

__all__ = ["Journal", "fsync_dir", "sha256_hex", "write_atomic"]

log = logging.getLogger(__name__)

#: ``prev`` of the first line.
GENESIS = "0" * 64


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fsync_dir(directory: Path) -> None:
    """Make a directory entry (a created or replaced file) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, never half.

    The bytes are fsynced in a temporary file of the same directory before
    ``os.replace`` (otherwise a crash could leave the new name pointing at
    unwritten blocks), and the directory after it (otherwise the rename
    itself may be lost).
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _line_hash(body: dict[str, Any], prev: str) -> str:
    return sha256_hex(canonical_bytes({"body": body, "prev": prev}))


def _parse(raw: bytes, prev: str) -> dict[str, Any] | None:
    """The body of one journal line if it checks and follows ``prev``; else None."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict) or set(obj) != {"body", "prev", "sha256"}:
        return None
    body = obj["body"]
    if not isinstance(body, dict) or obj["prev"] != prev:
        return None
    try:
        if obj["sha256"] != _line_hash(body, prev) or canonical_bytes(obj) != raw:
            return None
    except (TypeError, ValueError):
        return None
    return body


class Journal:
    """The entries of a journal file, and appending one durably.

    Opening reads and checks the whole file (see the module docstring for
    what is cut off and what is refused).
    """

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self.entries: list[dict[str, Any]] = []
        self._prev = GENESIS
        #: bytes cut off a torn tail when the journal was opened (0: none)
        self.discarded = 0
        if self._path.exists():
            self._load()

    @property
    def path(self) -> Path:
        return self._path

    def _load(self) -> None:
        raw = self._path.read_bytes()
        lines = raw.split(b"\n")
        # a file ending in "\n" splits into its lines and an empty string: the
        # last piece is whatever followed the final newline (a torn line or "")
        complete, tail = lines[:-1], lines[-1]
        good = 0
        for number, line in enumerate(complete, start=1):
            body = _parse(line, self._prev)
            if body is None:
                if number == len(complete) and not tail:
                    tail = line  # the last line, damaged: the append never returned
                    break
                raise IntegrityError(
                    f"{self._path}: line {number} of {len(complete)} is damaged; the journal "
                    "cannot be trusted past it. Restore the state folder from a backup "
                    "(docs/deployment.md)"
                )
            self.entries.append(body)
            self._prev = json.loads(line)["sha256"]
            good += len(line) + 1
        if tail:
            log.warning(
                "%s: discarding a torn last line (%d bytes) left by a crash during a write",
                self._path,
                len(raw) - good,
            )
            self.discarded = len(raw) - good
            with self._path.open("r+b") as fh:
                fh.truncate(good)
                fh.flush()
                os.fsync(fh.fileno())

    def append(self, body: dict[str, Any]) -> None:
        """Write one entry and fsync it; when this returns, the entry survives a crash."""
        digest = _line_hash(body, self._prev)
        line = canonical_bytes({"body": body, "prev": self._prev, "sha256": digest})
        created = not self._path.exists()
        with self._path.open("ab") as fh:
            fh.write(line + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        if created:
            fsync_dir(self._path.parent)
        self.entries.append(json.loads(line)["body"])
        self._prev = digest
