"""Audit findings: what was wrong (or notable), where, and what was expected.

Why a fixed vocabulary of codes: an audit gates pipelines and is read by
people who did not write securefl, so every finding has a stable ``code`` a
script can match, a severity that decides the exit code, and the site and
round it is about. docs/audit.md lists every code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CODES", "FAIL", "INFO", "WARN", "Finding"]

FAIL = "fail"
WARN = "warn"
INFO = "info"

#: Every finding code and its default severity.
CODES: dict[str, str] = {
    "malformed_record": FAIL,
    "unknown_site": FAIL,
    "federation_mismatch": FAIL,
    "bad_signature": FAIL,
    "duplicate_record": FAIL,
    "fork": FAIL,
    "missing_round": FAIL,
    "reordered": FAIL,
    "round_not_increasing": FAIL,
    "epsilon_under_reported": FAIL,
    "epsilon_below_independent": FAIL,
    "budget_exceeded": FAIL,
    "sample_rate_inconsistent": FAIL,
    "non_poisson_sampling": FAIL,
    "no_secure_rng": WARN,
    "round_skipped": INFO,
    "site_without_records": INFO,
    "site_behind": INFO,
}


@dataclass(frozen=True)
class Finding:
    """One observation of an audit. ``severity == "fail"`` fails the audit."""

    code: str
    severity: str
    site: str | None
    round_id: int | None
    message: str
    expected: str | None = None
    location: str | None = None

    @property
    def fails(self) -> bool:
        """Whether this finding makes the audit exit non-zero."""
        return self.severity == FAIL

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for ``--json`` and the HTML report."""
        return asdict(self)
