"""Auditable privacy: signed hash-chained records, audit and plan.

Each site writes one signed record per round (:class:`RecordWriter`); the
roster (:class:`Roster`) says whose keys count; :func:`audit` verifies the
records and recomputes ε with two independent accountants; :func:`plan`
answers before training what a configuration will cost.
"""

from securefl.reports.audit import AuditReport, RoundResult, Tolerance, audit
from securefl.reports.findings import CODES, Finding
from securefl.reports.records import RecordWriter, parse_record, read_record_file
from securefl.reports.roster import Roster

__all__ = [
    "CODES",
    "AuditReport",
    "Finding",
    "RecordWriter",
    "Roster",
    "RoundResult",
    "Tolerance",
    "audit",
    "parse_record",
    "read_record_file",
]
