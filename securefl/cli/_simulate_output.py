"""What ``securefl simulate`` prints: the table of what each site gained, and where the run went."""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from securefl.cli._table import new_table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from securefl.simulation.orchestrator import SimulationResult

__all__ = ["print_result", "result_table"]


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _gain(alone: float, together: float) -> str:
    if math.isnan(alone) or math.isnan(together):
        return "n/a"
    diff = together - alone
    colour = "green" if diff > 0 else ("red" if diff < 0 else "white")
    return f"{_fmt(alone)} → {_fmt(together)} [{colour}]{diff:+.3f}[/]"


_ACCOUNTANT = {"local": "PRV accountant", "distributed": "central, Skellam RDP bound"}


def result_table(result: SimulationResult, has_test: bool) -> Table:
    """What each site gained, one row per site."""
    # two-line headers, so that the numbers, not the words, set the widths
    columns = ["site", "examples", "ε spent /\nbudget", "own validation\ndata"]
    if has_test:
        columns.append("held-out\ntest set")
    table = new_table(
        f"Was joining worth it?  (secure={result.secure}, {result.rounds_completed} "
        f"rounds, {result.finish_reason})",
        columns,
        names=[s.name for s in result.sites],
        caption="accuracy of a model trained alone (same data, same DP budget) → the federated "
        f"model; ε at δ = {result.sites[0].delta:g} ({_ACCOUNTANT[result.privacy]})",
    )
    for s in result.sites:
        row = [
            s.name,
            str(s.num_examples),
            f"{s.epsilon:.3f} / {s.epsilon_budget:g}",
            _gain(s.local_only_accuracy, s.federated_accuracy),
        ]
        if has_test:
            row.append(_gain(s.local_only_test_accuracy, result.global_accuracy))
        table.add_row(*row)
    return table


def print_result(
    console: Console, result: SimulationResult, has_test: bool, out: Path | None
) -> None:
    console.print(result_table(result, has_test))
    what = "held-out test accuracy" if has_test else "pooled validation accuracy"
    console.print(f"Data: {result.data}")
    console.print(f"Federated model {what}: [bold]{result.global_accuracy:.3f}[/]")
    for s in result.sites:
        if s.error:
            console.print(f"[yellow]{s.name}[/]: {s.error}")
    if out is not None:
        console.print(
            f"Wrote {out}/summary.json, roster.json, records/, server_log.jsonl and "
            "global_model.safetensors"
            f" (check with: securefl audit {out})"
        )
