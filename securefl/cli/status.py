"""``securefl status URL --kit DIR [--json]``: a running server's status.

Thin on purpose: :func:`securefl.deploy.status.fetch_status` asks the server
with the kit's credentials; this prints a table or the JSON as it came.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from securefl.cli._errors import exit_on_error

__all__ = ["status"]


def _table(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"Federation [bold]{data.get('federation')}[/bold]: round {data.get('round')}, "
        f"stage {data.get('stage')}; last aggregate {data.get('last_aggregate') or 'none yet'}; "
        f"dropped this round: {', '.join(data.get('dropped_this_round') or []) or 'none'}",
        markup=True,
        highlight=False,
    )
    table = Table()
    for col in ("site", "connected", "last seen", "ε reported"):
        table.add_column(col)
    sites = data.get("sites") or {}
    for name, site in sites.items():
        eps = site.get("epsilon")
        table.add_row(
            str(name),
            "yes" if site.get("connected") else "no",
            str(site.get("last_seen") or "-"),
            "-" if eps is None else f"{float(eps):.3f}",
        )
    console.print(table)


@click.command()
@click.argument("url", required=False)
@click.option(
    "--kit",
    "kit",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="A site kit: its client certificate opens the status.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@exit_on_error
def status(url: str | None, kit: Path, as_json: bool) -> None:
    """Show the status of the server at URL (default: the kit's server)."""
    from securefl.deploy.status import fetch_status

    data = fetch_status(kit, url)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    elif isinstance(data, dict):
        _table(data)
    else:
        click.echo(json.dumps(data))
