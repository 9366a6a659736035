"""Auditable privacy: signed hash-chained records, audit and plan.

Each site writes one signed record per round (:class:`RecordWriter`) and the
server one signed line per round of its round log (:class:`ServerLogWriter`);
the roster (:class:`Roster`) says whose keys count; :func:`audit` verifies the
records, recomputes ε with two independent accountants and holds the records
against the round log; :func:`plan` answers before training what a
configuration will cost.
"""

from securefl.reports.audit import AuditReport, RoundResult, Tolerance, audit
from securefl.reports.findings import CODES, Finding
from securefl.reports.records import RecordWriter, parse_record, read_record_file
from securefl.reports.roster import Roster
from securefl.reports.server_log import ServerLogWriter, read_server_log

__all__ = [
    "CODES",
    "AuditReport",
    "Finding",
    "RecordWriter",
    "Roster",
    "RoundResult",
    "ServerLogWriter",
    "Tolerance",
    "audit",
    "parse_record",
    "read_record_file",
    "read_server_log",
]
