"""``securefl server --kit DIR``: the coordinator, one open port, no torch.

Thin on purpose: the server is built by :func:`securefl.deploy.server.build_server`.
Exit codes: 0 when the federation ran to its end, 5 when it halted (too few
sites, a refused cohort), 130 when interrupted, a library error's own code
otherwise (one line, never a traceback).
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType

import click

from securefl.cli._errors import exit_on_error

__all__ = ["server"]

#: Exit code when the federation halted before its plan (no round could open).
EXIT_HALTED = 5
EXIT_INTERRUPTED = 130


def _configure_logging(json_logs: bool) -> None:
    from securefl.transport._status import JsonLogFormatter

    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("uvicorn", "uvicorn.error", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _interrupt_on_sigterm() -> None:
    """SIGTERM ends the federation as Ctrl-C does (sites told, round log closed)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@click.command()
@click.option(
    "--kit",
    "kit",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The server's kit folder (from securefl provision).",
)
@click.option("--host", default=None, help="Address to listen on (default: server.bind).")
@click.option(
    "--port",
    type=int,
    default=None,
    help="Port to listen on; 0 picks a free one (default: server.port).",
)
@click.option("--json-logs", is_flag=True, help="One JSON object per log line, for machines.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to wait after the last round for sites to fetch their final message.",
)
@click.option(
    "--ready-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the server's URL here once it accepts connections (for scripts).",
)
@exit_on_error
def server(
    kit: Path,
    host: str | None,
    port: int | None,
    json_logs: bool,
    grace: float,
    ready_file: Path | None,
) -> None:
    """Run the federation's server from its kit: mutual TLS, roster members only."""
    from securefl.deploy.server import build_server

    _configure_logging(json_logs)
    _interrupt_on_sigterm()
    built = build_server(kit, host=host, port=port)
    log = logging.getLogger("securefl.server")

    def listening(url: str) -> None:
        log.info("federation %s: listening on %s", built.kit.federation.name, url)
        if ready_file is not None:
            tmp = ready_file.with_name(ready_file.name + ".tmp")
            tmp.write_text(url + "\n", encoding="utf-8")
            tmp.replace(ready_file)  # a reader never sees half a URL

    try:
        outcome = built.run(grace=grace, on_listening=listening)
    except KeyboardInterrupt:  # a second interrupt while stopping
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    log.info(
        "federation %s ended after %d round(s), %d aggregated: %s; round log %s",
        built.kit.federation.name,
        outcome.rounds,
        outcome.completed,
        outcome.reason,
        outcome.log_path,
    )
    if outcome.interrupted:
        raise click.exceptions.Exit(EXIT_INTERRUPTED)
    if outcome.halted:
        raise click.exceptions.Exit(EXIT_HALTED)
