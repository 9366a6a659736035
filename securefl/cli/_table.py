"""Tables that stay readable at 80 columns and when piped.

Rich shortens a cell that does not fit with "…", which cut site names to
"hospit…". Here no column is ever cut: names fold onto a second line only
if they are too long to share a line with the numbers, headers are short
(their explanation goes in the caption), and the borders are light.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.table import Table

__all__ = ["new_table"]

#: a name column gets this much room before others are squeezed
_NAME_ROOM = 26


def new_table(
    title: str,
    columns: Sequence[str],
    *,
    names: Sequence[str] = (),
    caption: str | None = None,
) -> Table:
    """A table whose first column holds ``names`` (left) and the others numbers (right)."""
    table = Table(
        title=title,
        caption=caption,
        box=box.SIMPLE_HEAD,
        title_justify="left",
        caption_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    # names never wrap (the numbers do, at their spaces); only a name too long
    # to leave the numbers any room at all folds onto a second line
    longest = max((len(n) for n in names), default=0)
    table.add_column(columns[0], overflow="fold", no_wrap=longest <= _NAME_ROOM)
    for header in columns[1:]:
        table.add_column(header, justify="right", overflow="fold")
    return table
