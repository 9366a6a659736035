"""Audit privacy records: verify who wrote them and recompute what they cost.

Why: a site's claim "we spent ε = 2.1 of our 3.0" is only worth what its
arithmetic is worth. The audit trusts only the roster's public keys, the
events in the records and, when present, the server's signed round log. It
runs, per site, the signature and chain checks (:mod:`~securefl.reports.chain`),
the policy checks along the chain (:mod:`~securefl.reports.policy`) and the
claim checks with the site's accountant *and* dp-accounting's PLD
(:mod:`~securefl.reports.claims`); then the checks across sites and against
the round log (:mod:`~securefl.reports.crosscheck`). Every discrepancy is a
:class:`~securefl.reports.findings.Finding` with the site, the round and what
was expected; the audit passes only when no finding has severity ``fail``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from securefl.errors import DataError
from securefl.reports._canonical import DuplicateKeyError, strict_loads
from securefl.reports.chain import check_chain, check_signatures
from securefl.reports.claims import check_claim, check_secure_rng
from securefl.reports.crosscheck import (
    check_against_log,
    check_coverage,
    check_expected_rounds,
    check_log_closed,
    check_models_agree,
    submitted_rounds,
)
from securefl.reports.distributed import check_share_protection
from securefl.reports.findings import CODES, FAIL, INFO, WARN, Finding
from securefl.reports.policy import check_policy
from securefl.reports.recompute import independent_pld_epsilon, securefl_epsilon
from securefl.reports.records import LoadedRecord, read_record_file
from securefl.reports.report import AuditReport, RoundResult, Tolerance
from securefl.reports.roster import Roster
from securefl.reports.server_log import SERVER_LOG_NAME, ServerLog, read_server_log

__all__ = [
    "AuditReport",
    "RoundResult",
    "Tolerance",
    "audit",
    "find_record_files",
    "find_roster",
    "find_server_log",
]

_SEVERITY_ORDER = {FAIL: 0, "warn": 1, INFO: 2}

#: a server state folder's journal (``securefl.runtime.server_state.JOURNAL_NAME``)
_SERVER_JOURNAL = "journal.jsonl"


def find_record_files(paths: Sequence[Path]) -> list[Path]:
    """Record files named directly, and every ``*.jsonl`` under named directories.

    The server's round log (``server_log.jsonl``) is not a record file and is
    skipped when found in a directory (see :func:`find_server_log`); so is a
    server state folder's journal (a run folder or a server kit holds one).
    """
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            out.extend(
                sorted(
                    p
                    for p in path.rglob("*.jsonl")
                    if p.is_file() and p.name not in (SERVER_LOG_NAME, _SERVER_JOURNAL)
                )
            )
        elif path.is_file():
            out.append(path)
        else:
            raise DataError(f"{path}: no such file or directory")
    if not out:
        raise DataError("no record files (*.jsonl) found in " + ", ".join(map(str, paths)))
    return list(dict.fromkeys(out))


def _near(paths: Sequence[Path], name: str) -> list[Path]:
    candidates: list[Path] = []
    for path in map(Path, paths):
        base = path if path.is_dir() else path.parent
        candidates += [base / name, base.parent / name]
    return list(dict.fromkeys(c.resolve() for c in candidates if c.is_file()))


def _nearest(paths: Sequence[Path], name: str) -> list[Path]:
    """Per named path, ``name`` in its own folder, else one above: the nearest only.

    A site's state folder holds the audit roster next to its records, and the
    kit one folder up holds the signed provisioning roster: the nearer one
    is the roster the records were written under.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        base = path if path.is_dir() else path.parent
        nearest = next((c for c in (base / name, base.parent / name) if c.is_file()), None)
        if nearest is not None:
            found.append(nearest.resolve())
    return list(dict.fromkeys(found))


def find_roster(paths: Sequence[Path]) -> Path:
    """``roster.json`` in a named directory, or next to / one above a named file.

    Several sites' folders hold copies of one roster: byte-identical copies
    are one roster; different ones are ambiguous and refused.
    """
    found = _nearest(paths, "roster.json")
    if len({f.read_bytes() for f in found}) == 1:  # each site's copy of one roster
        found = found[:1]
    if len(found) != 1:
        what = "no roster.json" if not found else "several roster.json files"
        raise DataError(f"{what} found next to the records; pass --roster FILE")
    return found[0]


def find_server_log(paths: Sequence[Path]) -> Path | None:
    """``server_log.jsonl`` where :func:`find_roster` looks, or None when there is none."""
    found = _near(paths, SERVER_LOG_NAME)
    if len(found) > 1:
        raise DataError(f"several {SERVER_LOG_NAME} files found; pass --server-log FILE")
    return found[0] if found else None


def _line_findings(path: Path) -> tuple[list[LoadedRecord], list[Finding]]:
    good, bad = read_record_file(path)
    findings = [
        Finding(
            b.code,
            CODES[b.code],
            None,
            None,
            b.error,
            "one record per line, valid under docs/schema/privacy-record-v1.json",
            f"{path}:{b.line}",
        )
        for b in bad
    ]
    findings += [
        Finding(
            "non_canonical",
            FAIL,
            r.record["site"],
            r.record["round_id"],
            "the stored line is not the canonical encoding of the record it holds",
            "the canonical JSON bytes that were hashed and signed (docs/records.md)",
            f"{path}:{r.line}",
        )
        for r in good
        if not r.canonical
    ]
    return good, findings


def _audit_site(
    site: str,
    records: list[LoadedRecord],
    roster: Roster,
    tolerance: Tolerance,
    require_secure_rng: bool,
    log: ServerLog | None,
) -> tuple[list[LoadedRecord], list[RoundResult], list[Finding]]:
    key = roster.sites.get(site)
    findings = check_signatures(records, key, roster.federation)
    if key is None:
        return [], [], findings
    submitted = submitted_rounds(log, site) if log is not None else None
    ordered, chain_findings = check_chain(records, submitted)
    findings += chain_findings + check_policy(ordered)
    results: list[RoundResult] = []
    events: list[dict[str, Any]] = []
    for loaded in ordered:
        rec = loaded.record
        events.append(rec["event"])
        recomputed = securefl_epsilon(events, delta=rec["delta"], accountant=rec["accountant"])
        independent = independent_pld_epsilon(events, delta=rec["delta"])
        findings += check_claim(loaded, recomputed, independent, tolerance)
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
    findings += check_secure_rng(ordered, require_secure_rng) + check_share_protection(ordered)
    return ordered, results, findings


def load_roster(path: Path) -> Roster:
    """The public keys an audit trusts, from an audit roster or from a kit's signed roster.

    A kit's ``roster.json`` (version 3, or 4 with BLS keys) is the one every party pinned at
    provisioning, so it is the natural copy for a hospital to audit with;
    it is used only after its CA signature verifies against the
    ``ca.cert.pem`` beside it (a kit holds both). Why not trust it unsigned:
    whoever can swap the file could then swap the keys the audit trusts.
    """
    path = Path(path)
    try:
        version = strict_loads(path.read_bytes()).get("version")
    except (OSError, ValueError, RecursionError, AttributeError, DuplicateKeyError):
        version = None  # Roster.load says what is wrong with the file
    if version not in (3, 4) or isinstance(version, bool):  # the signed roster's versions
        return Roster.load(path)
    from securefl.provision.pki import load_cert
    from securefl.provision.roster import SignedRoster

    ca = path.parent / "ca.cert.pem"
    if not ca.is_file():
        raise DataError(
            f"{path}: a kit's signed roster needs the kit's ca.cert.pem beside it to verify"
        )
    return SignedRoster.load(path, load_cert(ca)).audit_roster()


def audit(
    paths: Sequence[Path],
    *,
    roster: Roster | Path | None = None,
    tolerance: Tolerance | None = None,
    require_secure_rng: bool = False,
    server_log: Path | None = None,
    expect_rounds: int | None = None,
    no_server_log: bool = False,
    still_running: bool = False,
) -> AuditReport:
    """Audit every record under ``paths`` against ``roster``.

    ``roster`` defaults to the ``roster.json`` found next to the records, and
    ``server_log`` to the ``server_log.jsonl`` found there. The roster is the
    root of trust: one that names a server key promises a round log, and an
    absent log then fails the audit, unless ``no_server_log`` (the auditor
    knowingly audits the records alone; what that leaves unchecked is a
    warning). A log without its signed closing line fails unless
    ``still_running``. ``expect_rounds``: fail records (or a round log)
    holding fewer rounds. Raises :class:`DataError` only when there is
    nothing to audit (no record files, no roster, a named log that does not
    exist); everything wrong *in* the records or the log is a finding.
    """
    tolerance = tolerance or Tolerance()
    if expect_rounds is not None and (isinstance(expect_rounds, bool) or expect_rounds < 1):
        raise DataError(f"expect_rounds must be an integer >= 1, got {expect_rounds!r}")
    files = find_record_files(paths)
    if not isinstance(roster, Roster):
        roster = load_roster(roster if roster is not None else find_roster(paths))
    if no_server_log:
        server_log = None
    elif server_log is None:
        server_log = find_server_log(paths)
    elif not Path(server_log).is_file():
        raise DataError(f"{server_log}: no such server round log")
    log: ServerLog | None = None
    findings: list[Finding] = _without_log(roster, no_server_log) if server_log is None else []
    if server_log is not None:
        log, findings = read_server_log(
            server_log, federation=roster.federation, public_key=roster.server
        )
        if log is not None:
            findings += check_log_closed(log, still_running, str(server_log))
    by_site: dict[str, list[LoadedRecord]] = defaultdict(list)
    for path in files:
        good, line_findings = _line_findings(path)
        findings += line_findings
        for loaded in good:
            by_site[loaded.record["site"]].append(loaded)
    results: list[RoundResult] = []
    ordered: dict[str, list[LoadedRecord]] = {}
    for site in sorted(by_site):
        ordered[site], site_results, site_findings = _audit_site(
            site, by_site[site], roster, tolerance, require_secure_rng, log
        )
        results += site_results
        findings += site_findings
    sites = sorted(set(roster.sites) | set(ordered))
    findings += check_models_agree(ordered)
    if log is not None:
        findings += check_against_log(ordered, sites, log, str(server_log))
    if expect_rounds is not None:
        findings += check_expected_rounds(ordered, sorted(roster.sites), log, expect_rounds)
    findings += check_coverage(ordered, sorted(roster.sites), log)
    findings.sort(key=lambda f: (_SEVERITY_ORDER[f.severity], f.site or "", f.round_id or -1))
    return AuditReport(
        federation=roster.federation,
        roster_sites=tuple(sorted(roster.sites)),
        files=tuple(str(p) for p in files),
        tolerance=tolerance,
        rounds=tuple(results),
        findings=tuple(findings),
        server_log=None if server_log is None else str(server_log),
        expected_rounds=expect_rounds,
        roster_fingerprint=roster.fingerprint(),
    )


#: What the audit cannot check without the server's round log.
UNCHECKED_WITHOUT_LOG = (
    "rounds a site took part in but dropped from its re-signed chain, records cut short, "
    "and the announced max_weight, batch size, σ, δ, budget and model are not checked"
)


def _without_log(roster: Roster, opted_out: bool) -> list[Finding]:
    """No round log: a failure when the roster promises one, else a warning naming the gap."""
    if roster.server is not None and not opted_out:
        return [
            Finding(
                "server_log_missing",
                FAIL,
                None,
                None,
                "the roster names a server key, so the server signed a round log, but none "
                f"was found ({SERVER_LOG_NAME}); deleting it would hide what it shows",
                f"{SERVER_LOG_NAME} next to the records, --server-log FILE, or --no-server-log "
                "to audit the records alone",
            )
        ]
    why = "--no-server-log was given" if opted_out else "the roster names no server key"
    return [
        Finding(
            "no_server_log",
            WARN,
            None,
            None,
            f"records audited without the server's round log ({why}): {UNCHECKED_WITHOUT_LOG}",
            "the server's signed round log",
        )
    ]
