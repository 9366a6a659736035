"""One clear line and an exit code for every error, never a traceback.

A library error is ``error: <message>`` with the exit code of its class. A
file the operating system refuses (a read-only or full ``--out``, a missing
permission) is one line naming the file, with exit code 3, like other input
that cannot be used. Anything else is a bug, in securefl or in code it runs:
one line saying so, and ``SECUREFL_TRACEBACK=1`` shows the traceback.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import click

from securefl.errors import DataError, SecureFLError

__all__ = ["EXIT_FILE", "EXIT_INTERRUPTED", "EXIT_UNEXPECTED", "exit_on_error", "os_error_line"]

P = ParamSpec("P")
R = TypeVar("R")

#: a file or folder the operating system refuses (the exit code of DataError)
EXIT_FILE = DataError.exit_code
#: a bug: an error that is not one of securefl's own
EXIT_UNEXPECTED = 70  # EX_SOFTWARE in sysexits.h
#: Ctrl-C, as shells report it
EXIT_INTERRUPTED = 130


def os_error_line(exc: OSError) -> str:
    """``cannot write /out/x: No space left on device``, from any OSError."""
    what = f" {exc.filename}" if exc.filename else ""
    return f"cannot use{what}: {exc.strerror or exc}"


def exit_on_error(func: Callable[P, R]) -> Callable[P, R]:
    """Turn every exception into ``error: …`` on stderr and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except SecureFLError as exc:
            click.echo(f"error: {exc}", err=True)
            raise click.exceptions.Exit(exc.exit_code) from None
        except BrokenPipeError:  # `securefl plan fed.toml | head`: the reader has had enough
            with contextlib.suppress(OSError, ValueError):  # no second error at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(EXIT_FILE) from None
        except OSError as exc:
            click.echo(f"error: {os_error_line(exc)}", err=True)
            raise click.exceptions.Exit(EXIT_FILE) from None
        except sqlite3.Error as exc:  # a site's ledger on a full or read-only disk
            click.echo(f"error: a privacy ledger could not be written: {exc}", err=True)
            raise click.exceptions.Exit(EXIT_FILE) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            if os.environ.get("SECUREFL_TRACEBACK"):
                raise
            click.echo(
                f"error: unexpected {type(exc).__name__}: {exc} (a bug in securefl or in the "
                "code it ran; SECUREFL_TRACEBACK=1 shows where)",
                err=True,
            )
            raise click.exceptions.Exit(EXIT_UNEXPECTED) from None

    return wrapper
