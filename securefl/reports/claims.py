"""Checks of each record's ε claim against two recomputations, and of its event.

Why here and not in the chain checks: these are about the arithmetic (is the
claim at least what the site's accountant and an independent PLD give, is it
within budget, can the event be accounted at all), not about who wrote what.
"""

from __future__ import annotations

import math

from securefl.reports.findings import FAIL, Finding, record_finding
from securefl.reports.records import LoadedRecord
from securefl.reports.report import Tolerance

__all__ = ["check_claim", "check_secure_rng"]


def _below(claimed: float, value: float, tolerance: Tolerance) -> bool:
    """Whether ``claimed`` is under ``value`` by more than the tolerance (∞ always is)."""
    return math.isinf(value) or claimed + tolerance.slack(value) < value


def _at_least(value: float, tolerance: Tolerance) -> str:
    if math.isinf(value):
        return "no finite ε can be claimed (the event is not accountable)"
    return f"ε ≥ {value - tolerance.slack(value):.6g}"


def check_claim(
    loaded: LoadedRecord, recomputed: float, independent: float, tolerance: Tolerance
) -> list[Finding]:
    """Claim vs recomputations, budget, sample rate and sampling of one record."""
    rec = loaded.record
    ev = rec["event"]
    claimed, budget, acct = rec["epsilon"], rec["epsilon_budget"], rec["accountant"]
    out: list[Finding] = []
    if _below(claimed, recomputed, tolerance):
        out.append(
            record_finding(
                "epsilon_under_reported",
                loaded,
                f"claims ε = {claimed:.6g}, its accountant ({acct}) gives {recomputed:.6g}",
                _at_least(recomputed, tolerance),
            )
        )
    if _below(claimed, independent, tolerance):
        out.append(
            record_finding(
                "epsilon_below_independent",
                loaded,
                f"claims ε = {claimed:.6g}, the independent recomputation "
                f"({'Skellam RDP bound' if ev['kind'] == 'skellam' else 'dp-accounting PLD'}) "
                f"gives {independent:.6g}",
                _at_least(independent, tolerance),
            )
        )
    if claimed > budget or recomputed > budget + tolerance.slack(budget):
        out.append(
            record_finding(
                "budget_exceeded",
                loaded,
                f"ε = {max(claimed, recomputed):.6g} passes the budget {budget:.6g}",
                f"ε ≤ {budget:.6g}",
            )
        )
    if ev["kind"] == "dpsgd":
        n, batch, q = rec["dataset_size"], rec["expected_batch_size"], ev["sample_rate"]
        # an honest record says batch = round(q·n) (securefl writes it so), so |q·n − batch|
        # is at most 1/2; a looser bound let batch = 1 pass with any q in (0, 2/n]
        if abs(q * n - batch) > 0.5:
            out.append(
                record_finding(
                    "sample_rate_inconsistent",
                    loaded,
                    f"sample rate {q:.6g} with {n} examples means a mean batch of "
                    f"{q * n:.6g}, but the record says {batch}",
                    f"sample_rate ≈ {batch}/{n} = {batch / n:.6g}",
                )
            )
    if ev["sampling"] != "poisson":
        out.append(
            record_finding(
                "non_poisson_sampling",
                loaded,
                f"sampling is {ev['sampling']!r}; no accountant bounds it",
                "sampling = 'poisson'",
            )
        )
    return out


def check_secure_rng(ordered: list[LoadedRecord], required: bool) -> list[Finding]:
    """One finding per site listing the rounds without a secure RNG (not one per round)."""
    rounds = [r.record["round_id"] for r in ordered if not r.record["event"]["secure_rng"]]
    if not rounds:
        return []
    listed = ", ".join(map(str, rounds[:10])) + (", ..." if len(rounds) > 10 else "")
    first = next(r for r in ordered if not r.record["event"]["secure_rng"])
    return [
        record_finding(
            "no_secure_rng",
            first,
            f"{len(rounds)} round(s) did not use a cryptographically secure RNG for noise "
            f"and sampling: {listed}",
            "secure_rng = true",
            FAIL if required else "",
        )
    ]
