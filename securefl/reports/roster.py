"""The roster: which parties may sign privacy records and round logs, with which key.

Why a separate file: an auditor must decide whom to trust *before* reading
records. A record that verifies under a key not on the roster proves nothing,
so the roster (written at provisioning or by ``simulate --out``) is the root
of trust for an audit.

Version 1 lists the sites. Version 2 adds the server's identity key, which
signs the server's round log (:mod:`securefl.reports.server_log`); it is
written only when a server key is known, so a roster without one stays a
version 1 file that older auditors read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securefl.errors import DataError
from securefl.reports._canonical import DuplicateKeyError, canonical_bytes, strict_loads

__all__ = ["ROSTER_VERSION", "ROSTER_VERSIONS", "SERVER_ENTRY", "Roster"]

#: The version written when the roster names a server key.
ROSTER_VERSION = 2
ROSTER_VERSIONS = (1, 2)
#: The name of the server's entry (the wire name of the server, too).
SERVER_ENTRY = "server"


def _key(name: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise DataError(f"public key of {name!r} must be a hex string")
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise DataError(f"public key of {name!r} is not hex") from None
    if len(key) != 32:
        raise DataError(f"public key of {name!r} must be 32 bytes")
    return key


@dataclass(frozen=True)
class Roster:
    """A federation's name, each site's and the server's raw 32-byte Ed25519 public key."""

    federation: str
    sites: dict[str, bytes] = field(default_factory=dict)
    server: bytes | None = None

    def __post_init__(self) -> None:
        for name, key in self.sites.items():
            if not isinstance(key, bytes) or len(key) != 32:
                raise DataError(f"roster: public key of {name!r} must be 32 raw bytes")
        if len(set(self.sites.values())) != len(self.sites):
            raise DataError("roster: two sites share one public key")
        if self.server is not None:
            if not isinstance(self.server, bytes) or len(self.server) != 32:
                raise DataError("roster: the server's public key must be 32 raw bytes")
            if self.server in self.sites.values():
                # a site holding the server key could sign the round log it is checked against
                raise DataError("roster: the server's key is also a site's key")
            if SERVER_ENTRY in self.sites:
                raise DataError(f"roster: a site may not be named {SERVER_ENTRY!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"version", "federation", "sites": [...], "server"?}``."""
        out: dict[str, Any] = {
            "version": 1 if self.server is None else ROSTER_VERSION,
            "federation": self.federation,
            "sites": [
                {"name": name, "public_key": key.hex()} for name, key in sorted(self.sites.items())
            ],
        }
        if self.server is not None:
            out["server"] = {"name": SERVER_ENTRY, "public_key": self.server.hex()}
        return out

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the roster's canonical JSON: what an auditor compares with the
        fingerprint from provisioning, since whoever holds the folder can swap roster.json."""
        return hashlib.sha256(canonical_bytes(self.to_dict())).hexdigest()

    def save(self, path: Path) -> None:
        """Write the roster as indented JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: object) -> Roster:
        """Validate the JSON form; any malformed content raises :class:`DataError`."""
        if not isinstance(data, dict):
            raise DataError("a roster must be a JSON object")
        version = data.get("version")
        if isinstance(version, bool) or version not in ROSTER_VERSIONS:
            raise DataError(f"unsupported roster version {version!r}")
        unknown = set(data) - {"version", "federation", "sites", "server"}
        if unknown or (version == 1 and "server" in data):
            raise DataError(f"unknown roster field {sorted(unknown or {'server'})[0]!r}")
        federation = data.get("federation")
        if not isinstance(federation, str) or not federation:
            raise DataError("federation must be a non-empty string")
        entries = data.get("sites")
        if not isinstance(entries, list):
            raise DataError("sites must be a list")
        sites: dict[str, bytes] = {}
        for entry in entries:
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name or name in sites:
                raise DataError(f"site name {name!r} is invalid or repeated")
            sites[name] = _key(name, entry.get("public_key"))
        server = None
        if version == 2:
            entry = data.get("server")
            if not isinstance(entry, dict) or entry.get("name") != SERVER_ENTRY:
                raise DataError(f"server must be {{'name': {SERVER_ENTRY!r}, 'public_key': ...}}")
            server = _key(SERVER_ENTRY, entry.get("public_key"))
        return cls(federation=federation, sites=sites, server=server)

    @classmethod
    def load(cls, path: Path) -> Roster:
        """Read a roster file; any malformed content raises :class:`DataError`."""
        path = Path(path)
        try:
            data = strict_loads(path.read_bytes())
        except FileNotFoundError:
            raise DataError(f"{path}: no such roster file") from None
        except DuplicateKeyError as exc:  # which of two keys would be trusted is not clear
            raise DataError(f"{path}: not a roster ({exc})") from None
        except (OSError, ValueError, RecursionError) as exc:  # also too deep, a huge number
            raise DataError(f"{path}: not a roster ({exc})") from None
        try:
            return cls.from_dict(data)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
