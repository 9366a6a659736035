"""Audit privacy records: verify who wrote them and recompute what they cost.

Why: a site's claim "we spent ε = 2.1 of our 3.0" is only worth what its
arithmetic is worth. The audit trusts only the roster's public keys and the
events in the records: it checks signatures and chains
(:mod:`securefl.reports.chain`), recomputes ε after every round with the
site's stated accountant *and* independently with dp-accounting's PLD
(:mod:`securefl.reports.recompute`), and turns every discrepancy into a
:class:`~securefl.reports.findings.Finding` with the site, the round and what
was expected. It passes only when no finding has severity ``fail``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securefl.errors import DataError
from securefl.reports.chain import check_chain, check_signatures
from securefl.reports.findings import CODES, FAIL, INFO, Finding
from securefl.reports.recompute import independent_pld_epsilon, securefl_epsilon
from securefl.reports.records import LoadedRecord, read_record_file
from securefl.reports.roster import Roster

__all__ = ["AuditReport", "RoundResult", "Tolerance", "audit", "find_record_files", "find_roster"]

_SEVERITY_ORDER = {FAIL: 0, "warn": 1, INFO: 2}


@dataclass(frozen=True)
class Tolerance:
    """How far below a recomputed ε a claim may be: ``relative·ε + absolute``.

    Accountants differ slightly in their numerics (PRV and PLD discretise
    differently), so an exact comparison would flag honest sites.
    """

    relative: float = 0.01
    absolute: float = 1e-3

    def __post_init__(self) -> None:
        if not (0 <= self.relative < 1 and 0 <= self.absolute and math.isfinite(self.absolute)):
            raise DataError("tolerance must be relative in [0, 1) and absolute >= 0")

    def slack(self, value: float) -> float:
        """The allowed shortfall below ``value``."""
        return self.relative * abs(value) + self.absolute


@dataclass(frozen=True)
class RoundResult:
    """One record's claim next to the two recomputations."""

    site: str
    round_id: int
    accountant: str
    delta: float
    claimed: float
    budget: float
    recomputed: float
    independent: float
    location: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (an unbounded ε is written as ``null``)."""

        def num(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "site": self.site,
            "round_id": self.round_id,
            "accountant": self.accountant,
            "delta": self.delta,
            "claimed": self.claimed,
            "budget": self.budget,
            "recomputed": num(self.recomputed),
            "independent_pld": num(self.independent),
            "location": self.location,
        }


@dataclass(frozen=True)
class AuditReport:
    """Everything an audit found, ready for a table, JSON or HTML."""

    federation: str
    roster_sites: tuple[str, ...]
    files: tuple[str, ...]
    tolerance: Tolerance
    rounds: tuple[RoundResult, ...] = ()
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        """True when no finding fails the audit."""
        return not any(f.fails for f in self.findings)

    def sites(self) -> list[str]:
        """Sites with records, in name order."""
        return sorted({r.site for r in self.rounds})

    def site_rounds(self, site: str) -> list[RoundResult]:
        """One site's results in round order."""
        return [r for r in self.rounds if r.site == site]

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document (also embedded in the HTML report)."""
        return {
            "federation": self.federation,
            "passed": self.passed,
            "roster_sites": list(self.roster_sites),
            "files": list(self.files),
            "tolerance": {"relative": self.tolerance.relative, "absolute": self.tolerance.absolute},
            "rounds": [r.to_dict() for r in self.rounds],
            "findings": [f.to_dict() for f in self.findings],
        }


def find_record_files(paths: Sequence[Path]) -> list[Path]:
    """Record files named directly, and every ``*.jsonl`` under named directories."""
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*.jsonl") if p.is_file()))
        elif path.is_file():
            out.append(path)
        else:
            raise DataError(f"{path}: no such file or directory")
    if not out:
        raise DataError("no record files (*.jsonl) found in " + ", ".join(map(str, paths)))
    return list(dict.fromkeys(out))


def find_roster(paths: Sequence[Path]) -> Path:
    """``roster.json`` in a named directory, or next to / one above a named file."""
    candidates: list[Path] = []
    for path in map(Path, paths):
        base = path if path.is_dir() else path.parent
        candidates += [base / "roster.json", base.parent / "roster.json"]
    found = list(dict.fromkeys(c.resolve() for c in candidates if c.is_file()))
    if len(found) != 1:
        what = "no roster.json" if not found else "several roster.json files"
        raise DataError(f"{what} found next to the records; pass --roster FILE")
    return found[0]


def _finding(
    code: str, rec: LoadedRecord, message: str, expected: str, severity: str = ""
) -> Finding:
    return Finding(
        code=code,
        severity=severity or CODES[code],
        site=rec.record["site"],
        round_id=rec.record["round_id"],
        message=message,
        expected=expected,
        location=f"{rec.path}:{rec.line}",
    )


def _below(claimed: float, value: float, tolerance: Tolerance) -> bool:
    """Whether ``claimed`` is under ``value`` by more than the tolerance (∞ always is)."""
    return math.isinf(value) or claimed + tolerance.slack(value) < value


def _at_least(value: float, tolerance: Tolerance) -> str:
    if math.isinf(value):
        return "no finite ε can be claimed (the event is not accountable)"
    return f"ε ≥ {value - tolerance.slack(value):.6g}"


def _check_round(
    loaded: LoadedRecord, recomputed: float, independent: float, tolerance: Tolerance
) -> list[Finding]:
    rec = loaded.record
    ev = rec["event"]
    claimed, budget, acct = rec["epsilon"], rec["epsilon_budget"], rec["accountant"]
    out: list[Finding] = []
    if _below(claimed, recomputed, tolerance):
        out.append(
            _finding(
                "epsilon_under_reported",
                loaded,
                f"claims ε = {claimed:.6g}, its accountant ({acct}) gives {recomputed:.6g}",
                _at_least(recomputed, tolerance),
            )
        )
    if _below(claimed, independent, tolerance):
        out.append(
            _finding(
                "epsilon_below_independent",
                loaded,
                f"claims ε = {claimed:.6g}, dp-accounting PLD gives {independent:.6g}",
                _at_least(independent, tolerance),
            )
        )
    if claimed > budget or recomputed > budget + tolerance.slack(budget):
        out.append(
            _finding(
                "budget_exceeded",
                loaded,
                f"ε = {max(claimed, recomputed):.6g} passes the budget {budget:.6g}",
                f"ε ≤ {budget:.6g}",
            )
        )
    if ev["kind"] == "dpsgd":
        n, batch, q = rec["dataset_size"], rec["expected_batch_size"], ev["sample_rate"]
        if abs(q * n - batch) > max(1.0, tolerance.relative * batch):
            out.append(
                _finding(
                    "sample_rate_inconsistent",
                    loaded,
                    f"sample rate {q:.6g} with {n} examples means a mean batch of "
                    f"{q * n:.6g}, but the record says {batch}",
                    f"sample_rate ≈ {batch}/{n} = {batch / n:.6g}",
                )
            )
    if ev["sampling"] != "poisson":
        out.append(
            _finding(
                "non_poisson_sampling",
                loaded,
                f"sampling is {ev['sampling']!r}; no accountant bounds it",
                "sampling = 'poisson'",
            )
        )
    return out


def _audit_site(
    site: str,
    records: list[LoadedRecord],
    roster: Roster,
    tolerance: Tolerance,
    require_secure_rng: bool,
) -> tuple[list[RoundResult], list[Finding]]:
    key = roster.sites.get(site)
    findings = check_signatures(records, key, roster.federation)
    if key is None:
        return [], findings
    ordered, chain_findings = check_chain(records)
    findings += chain_findings
    results: list[RoundResult] = []
    events: list[dict[str, Any]] = []
    for loaded in ordered:
        rec = loaded.record
        events.append(rec["event"])
        recomputed = securefl_epsilon(events, delta=rec["delta"], accountant=rec["accountant"])
        independent = independent_pld_epsilon(events, delta=rec["delta"])
        findings += _check_round(loaded, recomputed, independent, tolerance)
        results.append(
            RoundResult(
                site=site,
                round_id=rec["round_id"],
                accountant=rec["accountant"],
                delta=rec["delta"],
                claimed=rec["epsilon"],
                budget=rec["epsilon_budget"],
                recomputed=recomputed,
                independent=independent,
                location=f"{loaded.path}:{loaded.line}",
            )
        )
    findings += _secure_rng(ordered, require_secure_rng)
    return results, findings


def _secure_rng(ordered: list[LoadedRecord], required: bool) -> list[Finding]:
    """One finding per site listing the rounds without a secure RNG (not one per round)."""
    rounds = [r.record["round_id"] for r in ordered if not r.record["event"]["secure_rng"]]
    if not rounds:
        return []
    listed = ", ".join(map(str, rounds[:10])) + (", ..." if len(rounds) > 10 else "")
    first = next(r for r in ordered if not r.record["event"]["secure_rng"])
    return [
        _finding(
            "no_secure_rng",
            first,
            f"{len(rounds)} round(s) did not use a cryptographically secure RNG for noise "
            f"and sampling: {listed}",
            "secure_rng = true",
            FAIL if required else "",
        )
    ]


def audit(
    paths: Sequence[Path],
    *,
    roster: Roster | Path | None = None,
    tolerance: Tolerance | None = None,
    require_secure_rng: bool = False,
) -> AuditReport:
    """Audit every record under ``paths`` against ``roster``.

    ``roster`` defaults to the ``roster.json`` found next to the records.
    Raises :class:`DataError` only when there is nothing to audit (no record
    files, no roster); everything wrong *in* the records becomes a finding.
    """
    tolerance = tolerance or Tolerance()
    files = find_record_files(paths)
    if not isinstance(roster, Roster):
        roster = Roster.load(roster if roster is not None else find_roster(paths))
    by_site: dict[str, list[LoadedRecord]] = defaultdict(list)
    findings: list[Finding] = []
    for path in files:
        good, bad = read_record_file(path)
        for loaded in good:
            by_site[loaded.record["site"]].append(loaded)
        findings += [
            Finding(
                "malformed_record",
                FAIL,
                None,
                None,
                error,
                "a record valid under docs/schema/privacy-record-v1.json",
                f"{path}:{line}",
            )
            for line, error in bad
        ]
    results: list[RoundResult] = []
    for site in sorted(by_site):
        site_results, site_findings = _audit_site(
            site, by_site[site], roster, tolerance, require_secure_rng
        )
        results += site_results
        findings += site_findings
    findings += _coverage_findings(roster, results)
    findings.sort(key=lambda f: (_SEVERITY_ORDER[f.severity], f.site or "", f.round_id or -1))
    return AuditReport(
        federation=roster.federation,
        roster_sites=tuple(sorted(roster.sites)),
        files=tuple(str(p) for p in files),
        tolerance=tolerance,
        rounds=tuple(results),
        findings=tuple(findings),
    )


def _coverage_findings(roster: Roster, results: list[RoundResult]) -> list[Finding]:
    """Informational: roster sites without records, sites whose records stop early."""
    last: dict[str, int] = {}
    for r in results:
        last[r.site] = max(last.get(r.site, r.round_id), r.round_id)
    out = [
        Finding(
            "site_without_records",
            INFO,
            site,
            None,
            "no records from this roster site",
            "records/<site>.jsonl",
        )
        for site in sorted(set(roster.sites) - set(last))
    ]
    if last:
        final = max(last.values())
        out += [
            Finding(
                "site_behind",
                INFO,
                site,
                r + 1,
                f"last record is round {r}; other sites recorded up to round {final} "
                "(dropped out, or later records are missing)",
                f"records up to round {final}",
            )
            for site, r in sorted(last.items())
            if r < final
        ]
    return out
