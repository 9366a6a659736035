"""What an audit returns: the claims next to their recomputations, and the findings.

Kept apart from the checks so the CLI, the HTML report and scripts depend on
one small, stable shape (:class:`AuditReport`, ``--json``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from securefl.errors import DataError
from securefl.reports.findings import Finding

__all__ = ["AuditReport", "RoundResult", "Tolerance"]


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
    #: the server round log held against the records, if any
    server_log: str | None = None
    #: the number of rounds the auditor was told to expect, if any
    expected_rounds: int | None = None
    #: SHA-256 of the roster audited against: compare it with the one from provisioning
    roster_fingerprint: str = ""

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
            "server_log": self.server_log,
            "expected_rounds": self.expected_rounds,
            "roster_fingerprint": self.roster_fingerprint,
            "tolerance": {"relative": self.tolerance.relative, "absolute": self.tolerance.absolute},
            "rounds": [r.to_dict() for r in self.rounds],
            "findings": [f.to_dict() for f in self.findings],
        }
