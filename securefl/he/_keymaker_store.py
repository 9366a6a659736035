"""The keymaker site's HE keys, kept in its state folder so a restart does not make new ones.

Why: every ciphertext of the run, and the history every site replays, is
under the keymaker's key set. A keymaker that made fresh keys after a
restart would send the server a second public context mid-run (the other
sites refuse a key set other than the one they hold) and could no longer
decrypt the aggregates of its own run. So the secret context and the key
material sent to the server are written once, owner-only (0600), fsynced and
atomically renamed into place *before* the keys leave the site; a restarted
keymaker sends the same bytes again, which the server can take as a repeat.

The file holds the secret key: a file another user may read is refused,
like a kit's private keys.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from securefl.errors import ConfigError, DataError, WireError
from securefl.he._context import SecretContext
from securefl.wire import pack, unpack

__all__ = ["KEYMAKER_FILE", "load_or_make"]

#: the file's name in a site's state folder
KEYMAKER_FILE = "he_keymaker.bin"
_FORMAT = "securefl-he-keymaker-state"


def load_or_make(
    path: Path, make: Callable[[], tuple[SecretContext, bytes]]
) -> tuple[SecretContext, bytes]:
    """The keymaker's (secret context, key material): read from ``path``, or made and saved."""
    if path.exists():
        return _load(path)
    secret, material = make()
    body = pack(
        {
            "v": 1,
            "format": _FORMAT,
            "secret": secret.to_bytes(include_secret_key=True),
            "material": material,
        }
    )
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".he-keymaker-")  # created 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return secret, material


def _load(path: Path) -> tuple[SecretContext, bytes]:
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise ConfigError(
            f"{path}: holds the federation's HE secret key and is readable by other users; "
            f"run: chmod 600 {path}"
        )
    try:
        obj = unpack(path.read_bytes())
    except (OSError, WireError) as exc:
        raise DataError(f"{path}: unreadable HE keymaker state ({exc})") from None
    if (
        not isinstance(obj, dict)
        or set(obj) != {"v", "format", "secret", "material"}
        or obj["v"] != 1
        or obj["format"] != _FORMAT
        or not isinstance(obj["secret"], bytes)
        or not isinstance(obj["material"], bytes)
    ):
        raise DataError(f"{path}: not a securefl HE keymaker state file")
    return SecretContext.from_bytes(obj["secret"]), obj["material"]
