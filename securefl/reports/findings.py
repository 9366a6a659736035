"""Audit findings: what was wrong (or notable), where, and what was expected.

Why a fixed vocabulary of codes: an audit gates pipelines and is read by
people who did not write securefl, so every finding has a stable ``code`` a
script can match, a severity that decides the exit code, and the site and
round it is about. docs/audit.md lists every code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from securefl.reports.records import LoadedRecord

__all__ = ["CODES", "FAIL", "INFO", "WARN", "Finding", "record_finding"]

FAIL = "fail"
WARN = "warn"
INFO = "info"

#: Every finding code and its default severity.
CODES: dict[str, str] = {
    # one line
    "malformed_record": FAIL,
    "duplicate_key": FAIL,
    "non_canonical": FAIL,
    # who signed it
    "unknown_site": FAIL,
    "federation_mismatch": FAIL,
    "bad_signature": FAIL,
    # one site's chain
    "duplicate_record": FAIL,
    "fork": FAIL,
    "missing_round": FAIL,
    "reordered": FAIL,
    "round_not_increasing": FAIL,
    "round_skipped": WARN,
    # one site's policy along its chain
    "budget_raised": FAIL,
    "delta_changed": FAIL,
    "accountant_changed": FAIL,
    "dataset_size_changed": FAIL,
    "delta_too_large": FAIL,
    # the ε claims
    "epsilon_under_reported": FAIL,
    "epsilon_below_independent": FAIL,
    "budget_exceeded": FAIL,
    "sample_rate_inconsistent": FAIL,
    "non_poisson_sampling": FAIL,
    "no_secure_rng": WARN,
    "masking_failure_exposure": INFO,
    # the server's round log, and the records held against it
    "server_not_on_roster": FAIL,
    "server_log_invalid": FAIL,
    "server_log_bad_signature": FAIL,
    "server_log_truncated": FAIL,
    "server_log_missing": FAIL,
    "server_log_open": FAIL,
    "no_server_log": WARN,
    "participation_unrecorded": FAIL,
    "records_truncated": FAIL,
    "models_differ": FAIL,
    "model_not_announced": FAIL,
    "parameters_differ": FAIL,
    "round_not_in_server_log": WARN,
    "record_outside_cohort": WARN,
    # coverage
    "site_without_records": INFO,
    "site_behind": WARN,
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


def record_finding(
    code: str,
    loaded: LoadedRecord,
    message: str,
    expected: str | None = None,
    severity: str = "",
) -> Finding:
    """A finding about one stored record, located at its file and line."""
    rec = loaded.record
    return Finding(
        code=code,
        severity=severity or CODES[code],
        site=rec["site"],
        round_id=rec["round_id"],
        message=message,
        expected=expected,
        location=f"{loaded.path}:{loaded.line}",
    )
