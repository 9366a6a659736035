"""``securefl audit PATH...``: verify privacy records and recompute ε.

Thin on purpose: the logic lives in :mod:`securefl.reports.audit`. Exit codes:
0 when no finding fails, 1 when one does, and the error's own code (e.g. 3 for
unreadable input) when there is nothing to audit.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from securefl.cli._errors import exit_on_error
from securefl.cli._table import new_table
from securefl.errors import ConfigError
from securefl.reports.audit import AuditReport, Tolerance
from securefl.reports.audit import audit as run_audit

__all__ = ["audit", "json_safe"]

#: Exit code when the audit ran and at least one finding fails it.
EXIT_FINDINGS = 1


def json_safe(obj: Any) -> Any:
    """Replace non-finite floats with None so the output is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {text!r}")
    return value


def _fmt(x: float) -> str:
    return f"{x:.4f}" if math.isfinite(x) else "∞"


def _print_tables(report: AuditReport) -> None:
    console = Console()
    sites = new_table(
        f"Privacy audit: {report.federation}",
        ["site", "round", "accountant", "claimed ε", "recomputed", "PLD ε", "budget", "failing"],
        names=report.sites(),
        caption="round: the last one recorded; recomputed: ε from the records with their own "
        "accountant; PLD ε: independently, with dp-accounting's PLD",
    )
    for site in report.sites():
        last = report.site_rounds(site)[-1]
        fails = sum(1 for f in report.findings if f.site == site and f.fails)
        sites.add_row(
            site,
            str(last.round_id),
            last.accountant,
            _fmt(last.claimed),
            _fmt(last.recomputed),
            _fmt(last.independent),
            _fmt(last.budget),
            str(fails),
            style="red" if fails else None,
        )
    console.print(sites)
    if report.findings:
        table = Table(title="Findings", box=box.SIMPLE_HEAD, title_justify="left")
        for col in ("severity", "code", "site", "round", "what", "expected"):
            table.add_column(col, overflow="fold")
        colours = {"fail": "red", "warn": "yellow", "info": "blue"}
        for f in report.findings:
            table.add_row(
                f"[{colours[f.severity]}]{f.severity}[/]",
                f.code,
                f.site or "",
                "" if f.round_id is None else str(f.round_id),
                f.message,
                f.expected or "",
            )
        console.print(table)
    console.print(
        f"Roster fingerprint (SHA-256): {report.roster_fingerprint}; compare it with the one "
        "from provisioning, or pass --roster with a copy obtained out of band."
    )
    if report.server_log is None:
        console.print("No server round log: records were not held against what the server saw.")
    else:
        console.print(f"Held against the server's round log {report.server_log}.")
    verdict = "[green]PASSED[/]" if report.passed else "[red]FAILED[/]"
    console.print(f"{verdict}: {sum(f.fails for f in report.findings)} failing findings")


@click.command("audit")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--roster",
    type=click.Path(path_type=Path),
    default=None,
    help="roster.json with each site's and the server's public key, as obtained from "
    "provisioning (default: found next to the records, which whoever holds them can swap)",
)
@click.option(
    "--server-log",
    type=click.Path(path_type=Path),
    default=None,
    help="the server's signed round log to hold the records against "
    "(default: server_log.jsonl found next to the records, if any)",
)
@click.option(
    "--no-server-log",
    is_flag=True,
    help="audit the records alone although the roster names a server key; then rounds a "
    "site dropped and re-signed around, records cut short and the announced settings "
    "are not checked",
)
@click.option(
    "--still-running",
    is_flag=True,
    help="the federation still runs: a round log without its closing line only warns",
)
@click.option(
    "--expect-rounds",
    type=click.IntRange(min=1),
    default=None,
    help="fail when the records (or the server's round log) hold fewer rounds than this",
)
@click.option(
    "--tolerance",
    "rel_tol",
    default="0.01",
    show_default=True,
    help="relative amount a claimed ε may be below a recomputed one",
)
@click.option(
    "--abs-tolerance",
    "abs_tol",
    default="0.001",
    show_default=True,
    help="absolute amount added to --tolerance",
)
@click.option(
    "--require-secure-rng",
    is_flag=True,
    help="fail (not just warn) when a record says no secure RNG was used",
)
@click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON only")
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path),
    default=None,
    help="also write an HTML report with plots to this file",
)
@exit_on_error
def audit(
    *,
    paths: tuple[Path, ...],
    roster: Path | None,
    server_log: Path | None,
    no_server_log: bool,
    still_running: bool,
    expect_rounds: int | None,
    rel_tol: str,
    abs_tol: str,
    require_secure_rng: bool,
    as_json: bool,
    html_path: Path | None,
) -> None:
    """Verify signed privacy records and recompute every ε claim.

    With the server's round log (found next to the records, or --server-log)
    every site's records are also held against what the server announced and
    who it says took part. A roster that names a server key needs that log.
    """
    if no_server_log and server_log is not None:
        raise ConfigError("give either --server-log FILE or --no-server-log, not both")
    rel = _number("--tolerance", rel_tol)
    if rel >= 1:
        raise ConfigError(f"--tolerance must be < 1 (relative), got {rel_tol!r}")
    tolerance = Tolerance(relative=rel, absolute=_number("--abs-tolerance", abs_tol))
    report = run_audit(
        list(paths),
        roster=roster,
        tolerance=tolerance,
        require_secure_rng=require_secure_rng,
        server_log=server_log,
        expect_rounds=expect_rounds,
        no_server_log=no_server_log,
        still_running=still_running,
    )
    if html_path is not None:
        from securefl.reports.html import write_html

        write_html(report, html_path)
        # stderr, so that --json keeps stdout to the one document
        click.echo(f"Wrote the HTML report to {html_path.resolve()}", err=True)
    if as_json:
        sys.stdout.write(json.dumps(json_safe(report.to_dict()), indent=2, allow_nan=False) + "\n")
    else:
        _print_tables(report)
    if not report.passed:
        raise click.exceptions.Exit(EXIT_FINDINGS)
