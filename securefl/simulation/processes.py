"""``securefl simulate --transport https``: the same federation as real processes on 127.0.0.1.

Why: before a hospital's IT installs anything, a deployment can be tried on
one machine exactly as it will run: a provisioned federation (CA, kits,
signed roster), one ``securefl server`` process and one ``securefl client``
process per site, talking HTTPS with mutual TLS over loopback. Nothing
crosses between the processes but what crosses the network in a real
deployment: each site's data reach its process as a CSV file written into
the run folder (``--data``/``--label``), never pickled.

The run folder (a temporary directory) holds the federation file, the kits,
the CSV files and each process's log. It is removed when the run succeeds;
when it fails or is interrupted every child process is killed and the
folder is kept, and the error says where it is.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO

from securefl.config import FederationConfig
from securefl.data.federations import FederatedData
from securefl.errors import AbortError, ConfigError
from securefl.simulation.site_process import LABEL

__all__ = ["Child", "RunFolder", "federation_toml", "spawn", "write_site_csvs"]

_CLI = "from securefl.cli import main; main()"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} to a federation file")


def federation_toml(tables: dict[str, dict[str, object]], sites: Sequence[str]) -> str:
    """A federation file from ``{table: {key: value}}`` (``None`` values left out).

    Only the flat values a federation file holds (strings, numbers, booleans,
    lists); :func:`securefl.config.load_federation` checks the result.
    """
    lines: list[str] = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
        lines.append("")
    for name in sites:
        lines += ["[[sites]]", f"name = {_toml_value(name)}", ""]
    return "\n".join(lines)


def _table(settings: object) -> dict[str, object]:
    """One dataclass of the federation's settings as a federation file table."""
    return {f.name: getattr(settings, f.name) for f in fields(settings)}  # type: ignore[arg-type]


def simulate_tables(config: FederationConfig) -> dict[str, dict[str, object]]:
    """The federation file's tables holding every setting of ``config`` but its sites.

    The inverse of :func:`securefl.config.load_federation` for every table
    (a test checks the round trip): what ``simulate --transport https``
    provisions is the federation ``simulate`` built, [mask] and [he]
    included. The sites are written by :func:`federation_toml`.
    """
    tables: dict[str, dict[str, object]] = {
        "federation": {"name": config.name, "secure": config.secure},
    }
    for name in ("dp", "train", "rounds", "strategy", "server", "pki", "mask", "he", "model"):
        tables[name] = _table(getattr(config, name))
    if config.data.schema is not None:  # the run folder is elsewhere: an absolute path
        tables["data"] = {"schema": str(Path(config.data.schema).resolve())}
    return tables


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_site_csvs(data: FederatedData, folder: Path, *, label: str = LABEL) -> dict[str, Path]:
    """One CSV per site (its training and validation rows, a header, the label column).

    A site process reads its file as a hospital reads its own export; the
    values are written with ``repr`` so they read back exactly.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for site in data.sites:
        path = folder / f"{site.name}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow([*data.feature_names, label])
            for x, y in ((site.x_train, site.y_train), (site.x_val, site.y_val)):
                for row, cls in zip(x, y, strict=True):
                    writer.writerow([repr(float(v)) for v in row] + [data.classes[int(cls)]])
        paths[site.name] = path
    return paths


@dataclass
class Child:
    """One party's process and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    _fh: IO[bytes]

    def stop(self, grace: float = 5.0) -> None:
        """Terminate (then kill) the process if it still runs; close its log."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait(timeout=grace)
        self._fh.close()

    @property
    def exit_code(self) -> int | None:
        return self.process.poll()

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


def spawn(name: str, args: Sequence[str], logs: Path, env: dict[str, str] | None = None) -> Child:
    """Start ``securefl ARGS`` as a child process, its output in ``logs/NAME.log``."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    fh = log.open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own CLI, arguments we built
        [sys.executable, "-c", _CLI, *args],
        stdin=subprocess.DEVNULL,
        stdout=fh,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    return Child(name=name, process=process, log=log, _fh=fh)


class RunFolder:
    """The temporary run folder: removed after a clean run, kept (and named) otherwise."""

    def __init__(self, keep: bool = False) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="securefl-https-"))
        self.keep = keep

    @contextlib.contextmanager
    def children(self) -> Iterator[list[Child]]:
        """Every child started in the block is stopped when it ends, however it ends."""
        started: list[Child] = []
        try:
            yield started
        finally:
            for child in reversed(started):
                child.stop(grace=5.0)

    def finish(self, ok: bool) -> Path | None:
        """Remove the folder after a clean run (unless kept); return it if it stays."""
        if ok and not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)
            return None
        return self.path


def wait_all(
    children: Sequence[Child],
    *,
    server: Child,
    timeout: float,
    on_tick: Callable[[], None] | None = None,
    tick: float = 0.5,
    ok_codes: tuple[int, ...] = (0,),
) -> None:
    """Wait until the server and every site exit; the server failing or the timeout is an error.

    A site that exits non-zero while the server carries on is a dropout the
    federation may tolerate; the server's own exit code is what decides.
    """
    deadline = time.monotonic() + timeout
    while True:
        if on_tick is not None:
            on_tick()
        if all(c.process.poll() is not None for c in children):
            break
        if server.process.poll() not in (None, *ok_codes):
            raise AbortError(
                f"the server exited with code {server.process.returncode}:\n{server.tail()}"
            )
        if time.monotonic() > deadline:
            running = [c.name for c in children if c.process.poll() is None]
            raise AbortError(
                f"the federation did not finish within {timeout:g} s (still running: "
                f"{', '.join(running)})"
            )
        time.sleep(tick)
    if server.process.returncode not in ok_codes:
        raise AbortError(
            f"the server exited with code {server.process.returncode}:\n{server.tail()}"
        )
