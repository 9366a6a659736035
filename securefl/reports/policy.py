"""Checks of one site's privacy policy along its own chain.

Why: the signature and the chain only prove the site wrote these records. A
site can still rewrite and re-sign its whole history, and the ε arithmetic
of each record is only as meaningful as the parameters it is computed under:
raise the budget halfway and a "within budget" claim means nothing; change δ
or the accountant and the ε of two rounds are no longer the same quantity;
change the dataset size and δ's meaning (per-example) moves with it. The
site's ledger never does any of this (it only allows lowering the budget),
so an audit fails a chain that does. δ ≥ 1/n is refused as well: such a δ
permits releasing one whole patient record outright.
"""

from __future__ import annotations

import itertools

from securefl.reports.findings import Finding, record_finding
from securefl.reports.records import LoadedRecord

__all__ = ["check_policy"]


def _changes(before: LoadedRecord, after: LoadedRecord) -> list[Finding]:
    a, b = before.record, after.record
    out: list[Finding] = []
    if b["epsilon_budget"] > a["epsilon_budget"]:
        out.append(
            record_finding(
                "budget_raised",
                after,
                f"budget raised from {a['epsilon_budget']:.6g} to {b['epsilon_budget']:.6g} "
                f"after round {a['round_id']}",
                f"epsilon_budget ≤ {a['epsilon_budget']:.6g} (a budget may only be lowered)",
            )
        )
    for field, code in (
        ("delta", "delta_changed"),
        ("accountant", "accountant_changed"),
        ("dataset_size", "dataset_size_changed"),
    ):
        if b[field] != a[field]:
            out.append(
                record_finding(
                    code,
                    after,
                    f"{field} changed from {a[field]!r} to {b[field]!r} "
                    f"after round {a['round_id']}",
                    f"{field} = {a[field]!r} for the whole chain",
                )
            )
    return out


def _delta_too_large(loaded: LoadedRecord) -> Finding:
    rec = loaded.record
    n = rec["dataset_size"]
    return record_finding(
        "delta_too_large",
        loaded,
        f"δ = {rec['delta']:.3g} is not below 1/{n} = {1 / n:.3g}: the guarantee allows "
        "releasing a whole record",
        f"δ < 1/dataset_size = {1 / n:.3g}",
    )


def check_policy(ordered: list[LoadedRecord]) -> list[Finding]:
    """Findings for one site's distinct records in round order (see the module docstring)."""
    out: list[Finding] = []
    for before, after in itertools.pairwise(ordered):
        out += _changes(before, after)
    reported: set[tuple[float, int]] = set()
    for loaded in ordered:
        rec = loaded.record
        key = (rec["delta"], rec["dataset_size"])
        if rec["delta"] * rec["dataset_size"] >= 1 and key not in reported:
            reported.add(key)
            out.append(_delta_too_large(loaded))
    return out
