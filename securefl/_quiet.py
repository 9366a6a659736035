"""Silence a library's log warnings that say nothing a user can act on.

dp-accounting's RDP accountant logs a warning through absl for every
fractional order whose series does not converge, then drops that order. A
dropped order can only raise the ε it reports (the minimum over fewer
orders), so the warning never signals an under-estimate; printed on every
``securefl plan`` or ``audit`` it buries the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_logger"]


@contextmanager
def quiet_logger(name: str = "absl", level: int = logging.ERROR) -> Iterator[None]:
    """Raise logger ``name``'s level to ``level`` for the duration of the block."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)
