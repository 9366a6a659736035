"""One clear line and an exit code for every library error."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import click

from securefl.errors import SecureFLError

__all__ = ["exit_on_error"]

P = ParamSpec("P")
R = TypeVar("R")


def exit_on_error(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a :class:`SecureFLError` into ``error: …`` on stderr and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except SecureFLError as exc:
            click.echo(f"error: {exc}", err=True)
            raise click.exceptions.Exit(exc.exit_code) from None

    return wrapper
