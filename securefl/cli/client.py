"""``securefl client --kit DIR (--train MODULE:FUNCTION | --data CSV --label COL)``.

Thin on purpose: :func:`securefl.deploy.client.run_client` does the work. One
progress line per round; the run ends with one line saying why (the
federation finished, this site's privacy budget is spent, the server stayed
unreachable), and errors are one line with the error's exit code, never a
traceback.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from securefl.cli._errors import exit_on_error
from securefl.errors import BudgetExhaustedError, TransportError

__all__ = ["client"]


@click.command()
@click.option(
    "--kit",
    "kit",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="This site's kit folder (from securefl provision).",
)
@click.option(
    "--train",
    "train",
    default=None,
    metavar="MODULE:FUNCTION",
    help="Your training function; it is called with the Site (see examples/).",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="This site's CSV file, for the built-in trainer.",
)
@click.option("--label", default=None, help="The CSV's outcome column (with --data).")
@click.option("--server", "server_url", default=None, help="The server's URL (default: the kit's).")
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Attempts (with backoff) while the server is unreachable: per request, and to "
    "reconnect after a transport error (the site then takes the next round).",
)
@exit_on_error
def client(
    kit: Path,
    train: str | None,
    data: Path | None,
    label: str | None,
    server_url: str | None,
    retries: int,
) -> None:
    """Take part in the federation as this kit's site."""
    from rich.console import Console

    from securefl.deploy.client import RoundEvent, check_options, load_train_function, run_client
    from securefl.transport.https_client import RetryPolicy

    console = Console(stderr=True, highlight=False)
    # Opacus' notes about its own hooks and accountant say nothing a site can act on
    warnings.filterwarnings("ignore", message="Full backward hook")
    warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")

    def show(event: RoundEvent) -> None:
        if event.kind == "start":
            console.print(f"round {event.round}: training with {event.cohort} site(s)")
        elif event.kind == "end":
            detail = f" ({event.reason})" if event.reason else ""
            console.print(
                f"round {event.round}: {event.status}, {event.survivors} site(s) aggregated{detail}"
            )

    check_options(train, data, label)
    function = load_train_function(train) if train is not None else None
    try:
        outcome = run_client(
            kit,
            train=function,
            data=data,
            label=label,
            server_url=server_url,
            retry=RetryPolicy(attempts=retries),
            observe=show,
        )
    except BudgetExhaustedError as exc:
        click.echo(f"stopped: this site's privacy budget is spent ({exc})", err=True)
        raise click.exceptions.Exit(exc.exit_code) from None
    except TransportError as exc:
        click.echo(f"stopped: the server is unreachable ({exc})", err=True)
        raise click.exceptions.Exit(exc.exit_code) from None
    spent = f"ε spent {outcome.epsilon_spent:.3f} of {outcome.epsilon_budget:g}"
    if outcome.finished:
        click.echo(
            f"{outcome.site}: the federation finished ({outcome.reason}); "
            f"{outcome.rounds} round(s) trained, {spent}"
        )
    else:
        click.echo(f"{outcome.site}: stopped after {outcome.rounds} round(s), {spent}")
