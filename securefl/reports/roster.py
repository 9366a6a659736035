"""The roster: which parties may write privacy records, and with which key.

Why a separate file: an auditor must decide whom to trust *before* reading
records. A record that verifies under a key not on the roster proves nothing,
so the roster (written at provisioning or by ``simulate --out``) is the root
of trust for an audit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securefl.errors import DataError

__all__ = ["ROSTER_VERSION", "Roster"]

ROSTER_VERSION = 1


@dataclass(frozen=True)
class Roster:
    """A federation's name and each site's raw 32-byte Ed25519 public key."""

    federation: str
    sites: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, key in self.sites.items():
            if not isinstance(key, bytes) or len(key) != 32:
                raise DataError(f"roster: public key of {name!r} must be 32 raw bytes")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"version": 1, "federation": ..., "sites": [...]}``."""
        return {
            "version": ROSTER_VERSION,
            "federation": self.federation,
            "sites": [
                {"name": name, "public_key": key.hex()} for name, key in sorted(self.sites.items())
            ],
        }

    def save(self, path: Path) -> None:
        """Write the roster as indented JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Roster:
        """Read a roster file; any malformed content raises :class:`DataError`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: no such roster file") from None
        except (OSError, ValueError, RecursionError) as exc:  # also too deep, a huge number
            raise DataError(f"{path}: not a roster ({exc})") from None
        try:
            if data["version"] != ROSTER_VERSION:
                raise DataError(f"{path}: unsupported roster version {data['version']!r}")
            federation = data["federation"]
            sites: dict[str, bytes] = {}
            for entry in data["sites"]:
                name = entry["name"]
                if not isinstance(name, str) or name in sites:
                    raise DataError(f"{path}: site name {name!r} is invalid or repeated")
                sites[name] = bytes.fromhex(entry["public_key"])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{path}: not a roster ({type(exc).__name__}: {exc})") from None
        if not isinstance(federation, str):
            raise DataError(f"{path}: federation must be a string")
        return cls(federation=federation, sites=sites)
