"""Checks across sites and against the server's signed round log.

Why: each site's chain only speaks for that site. Held side by side, the
records of one round must name one model (a server that sends two sites
different models can isolate one update, Pasquini et al., CCS 2022), and held
against the server's round log (:mod:`securefl.reports.server_log`) every
site the log lists among those that submitted in a round must have a record
of it (a site that drops an expensive round and re-signs the rest, or a
folder cut short, no longer passes), under the DP policy the server announced.

A record and a log entry are matched by (run, round) when both carry the
server's run id, by round alone otherwise (files from before runs were
named): round 3 of one run of the server is not round 3 of another.

A disagreement between a site's records and the log is worded as exactly
that: the audit cannot tell which party is lying. A cheating server can make
an honest site fail (a round it invents, another model hash, a lower
announced budget); it cannot make a site's under-reported ε pass.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from securefl.reports.findings import CODES, FAIL, INFO, WARN, Finding
from securefl.reports.records import LoadedRecord, record_run
from securefl.reports.server_log import ServerLog

__all__ = [
    "check_against_log",
    "check_coverage",
    "check_expected_rounds",
    "check_log_closed",
    "check_models_agree",
    "submitted_rounds",
]

#: Relative slack when comparing an announced float with a recorded one.
_REL = 1e-9


def _finding(
    code: str,
    site: str | None,
    round_id: int | None,
    message: str,
    expected: str,
    location: str | None,
    severity: str = "",
) -> Finding:
    return Finding(code, severity or CODES[code], site, round_id, message, expected, location)


def _at(loaded: LoadedRecord) -> str:
    return f"{loaded.path}:{loaded.line}"


def submitted_rounds(log: ServerLog, site: str) -> set[int]:
    """The rounds the log lists ``site`` among those that submitted (were charged) in."""
    return {r for r, entry in log.rounds.items() if site in entry["submitted"]}


def _log_entry(log: ServerLog, loaded: LoadedRecord) -> dict[str, Any] | None:
    """The log's entry for the record's round: same round, and same run when both name one."""
    entry = log.rounds.get(loaded.record["round_id"])
    if entry is None:
        return None
    logged, recorded = str(entry.get("run", "") or ""), record_run(loaded.record)
    return entry if not logged or not recorded or logged == recorded else None


def _runs(log: ServerLog) -> set[str]:
    """The run ids the log's round lines name (none for a log from before runs were named)."""
    return {str(e.get("run") or "") for e in log.rounds.values()} - {""}


def check_models_agree(by_site: dict[str, list[LoadedRecord]]) -> list[Finding]:
    """One round, one model: records of a round that name different model hashes fail."""
    rounds: dict[tuple[str, int], dict[str, list[LoadedRecord]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for records in by_site.values():
        for loaded in records:
            key = (record_run(loaded.record), loaded.record["round_id"])
            rounds[key][loaded.record["model_hash"]].append(loaded)
    out: list[Finding] = []
    for (_, round_id), by_hash in sorted(rounds.items()):
        if len(by_hash) < 2:
            continue
        groups = "; ".join(
            f"{h[:12]}...: {', '.join(sorted(r.record['site'] for r in recs))}"
            for h, recs in sorted(by_hash.items())
        )
        out.append(
            _finding(
                "models_differ",
                None,
                round_id,
                f"sites received different models in round {round_id} ({groups})",
                "one model hash per round",
                _at(next(iter(by_hash.values()))[0]),
            )
        )
    return out


def _parameters(loaded: LoadedRecord, entry: dict[str, Any]) -> list[str]:
    rec, dp, ev = loaded.record, entry["dp"], loaded.record["event"]
    n = rec["dataset_size"]
    differ = [
        f"{name} {ours!r} (announced {theirs!r})"
        for name, ours, theirs in (
            ("delta", rec["delta"], dp["delta"]),
            ("accountant", rec["accountant"], dp["accountant"]),
            ("max_grad_norm", rec["event"]["max_grad_norm"], dp["max_grad_norm"]),
        )
        if ours != theirs
    ]
    if rec["epsilon_budget"] > dp["epsilon"]:
        differ.append(f"epsilon_budget {rec['epsilon_budget']!r} (announced {dp['epsilon']!r})")
    if n > entry["max_weight"]:  # an honest site refuses a round whose bound is below its n
        differ.append(f"dataset_size {n} (announced max_weight {entry['max_weight']:g})")
    if dp["batch_size"] is not None and ev["kind"] == "dpsgd":
        # Poisson loader of a loader of B-sized batches: q = 1/len(loader) >= 1/ceil(n/B)
        least = 1 / math.ceil(n / dp["batch_size"])
        if ev["sample_rate"] < least * (1 - _REL):
            differ.append(
                f"sample_rate {ev['sample_rate']!r} (the announced batch_size "
                f"{dp['batch_size']} with {n} examples gives at least {least:.6g})"
            )
    sigma = dp["noise_multiplier"]
    if sigma is not None and not math.isclose(ev["noise_multiplier"], sigma, rel_tol=_REL):
        differ.append(f"noise_multiplier {ev['noise_multiplier']!r} (announced {sigma!r})")
    return differ


def _record_vs_entry(loaded: LoadedRecord, log: ServerLog, where: str) -> list[Finding]:
    rec = loaded.record
    site, rnd = rec["site"], rec["round_id"]
    entry = _log_entry(log, loaded)
    if entry is None:
        run, logged = record_run(rec), _runs(log)
        if run and logged and run not in logged:
            # another run of the server (another state folder) has its own round log; this
            # log's own rounds are still held against the site (see _participation)
            return [
                _finding(
                    "round_not_in_server_log",
                    site,
                    rnd,
                    f"{site!r} has a record of round {rnd} of run {run[:12]}; this round log "
                    f"is of run {', '.join(r[:12] for r in sorted(logged))}",
                    f"audit run {run[:12]}'s records against that run's round log",
                    _at(loaded),
                    WARN,
                )
            ]
        # a closed log says no other round ran: a site and the server disagree. An open
        # one may just not have reached this round yet (a federation still running).
        return [
            _finding(
                "round_not_in_server_log",
                site,
                rnd,
                f"{site!r} has a record of round {rnd}; the server's round log has no such "
                "round" + (" and is closed" if log.closed else " (the log is not closed)"),
                f"round {rnd} in {where}",
                _at(loaded),
                FAIL if log.closed else WARN,
            )
        ]
    out: list[Finding] = []
    if site not in entry["cohort"]:
        out.append(
            _finding(
                "record_outside_cohort",
                site,
                rnd,
                f"{site!r} has a record of round {rnd}; the server's round log does not "
                "list it in that round's cohort",
                f"a cohort member of round {rnd}",
                _at(loaded),
            )
        )
    if entry["model_hash"] is not None and rec["model_hash"] != entry["model_hash"]:
        out.append(
            _finding(
                "model_not_announced",
                site,
                rnd,
                f"{site!r} and the server disagree: the record names model "
                f"{rec['model_hash'][:12]}..., the round log {entry['model_hash'][:12]}...",
                f"model_hash = {entry['model_hash']}",
                _at(loaded),
            )
        )
    differ = _parameters(loaded, entry)
    if differ:
        out.append(
            _finding(
                "parameters_differ",
                site,
                rnd,
                f"{site!r}'s record and the server's announcement disagree: " + "; ".join(differ),
                "the announced δ, accountant, clip, batch size and σ, a budget no higher, "
                "a dataset within max_weight",
                _at(loaded),
            )
        )
    return out


def _participation(
    site: str, records: list[LoadedRecord], log: ServerLog, where: str
) -> list[Finding]:
    recorded = {r.record["round_id"] for r in records if _log_entry(log, r) is not None}
    missing = sorted(submitted_rounds(log, site) - recorded)
    last = max(recorded, default=-1)
    out = [
        _finding(
            "participation_unrecorded",
            site,
            rnd,
            f"the server's round log says {site!r} submitted in round {rnd}; "
            "the site has no record of it",
            f"a record for round {rnd}",
            where,
        )
        for rnd in missing
        if rnd < last
    ]
    tail = [rnd for rnd in missing if rnd > last]
    if tail:
        out.append(
            _finding(
                "records_truncated",
                site,
                tail[0],
                f"the records stop at round {last if recorded else 'none'}; the server's round "
                f"log shows the site took part in rounds {', '.join(map(str, tail))}",
                f"records up to round {tail[-1]}",
                where,
            )
        )
    return out


def check_against_log(
    by_site: dict[str, list[LoadedRecord]], sites: list[str], log: ServerLog, where: str
) -> list[Finding]:
    """Every record against its round's log line, every survivor against its records.

    ``sites``: every site to hold against the log (the roster's and those
    with records); ``where``: the log's path, for findings about absent records.
    """
    out: list[Finding] = []
    for site in sites:
        records = by_site.get(site, [])
        for loaded in records:
            out += _record_vs_entry(loaded, log, where)
        out += _participation(site, records, log, where)
    return out


def check_log_closed(log: ServerLog, running: bool, where: str) -> list[Finding]:
    """A log without its closing line was cut, unless the auditor says the run goes on.

    Cutting the log's last lines and the records of those rounds together
    leaves two valid chains that agree; only the signed closing line shows
    the log is whole.
    """
    if log.closed:
        return []
    last = max(log.rounds, default=None)
    return [
        _finding(
            "server_log_open",
            None,
            last,
            f"the server's round log has no closing line after round {last}: it was cut "
            "short, or the federation is still running"
            + (" (the auditor says it is)" if running else ""),
            "a signed closing line, or --still-running for a federation that runs",
            where,
            WARN if running else FAIL,
        )
    ]


def check_expected_rounds(
    by_site: dict[str, list[LoadedRecord]], sites: list[str], log: ServerLog | None, expected: int
) -> list[Finding]:
    """What the auditor was told to expect: ``expected`` rounds.

    With a round log, the log must hold that many rounds (the per-site check
    is then :func:`check_against_log`, which knows who took part); without
    one, every roster site must have at least that many records.
    """
    if log is not None:
        if len(log.rounds) >= expected:
            return []
        return [
            _finding(
                "server_log_truncated",
                None,
                None,
                f"the server's round log holds {len(log.rounds)} round(s), {expected} were "
                "expected",
                f"{expected} rounds",
                None,
            )
        ]
    return [
        _finding(
            "records_truncated",
            site,
            None,
            f"{len(by_site.get(site, []))} record(s), {expected} rounds were expected",
            f"at least {expected} records",
            None,
        )
        for site in sites
        if len(by_site.get(site, [])) < expected
    ]


def check_coverage(
    by_site: dict[str, list[LoadedRecord]], roster_sites: list[str], log: ServerLog | None
) -> list[Finding]:
    """Chains that start late or stop early compared with the other sites'.

    Without a round log that is a warning: a site that joined late or dropped
    out looks the same as one whose first or last records were removed (and
    re-signed). With a verified log it is informational, because
    :func:`check_against_log` already fails every round the site survived
    without a record of it.
    """
    severity = WARN if log is None else INFO
    bounds = {
        site: (records[0].record["round_id"], records[-1].record["round_id"])
        for site, records in by_site.items()
        if records
    }
    out = [
        Finding(
            "site_without_records",
            INFO,
            site,
            None,
            "no records from this roster site",
            "records/<site>.jsonl",
        )
        for site in sorted(set(roster_sites) - set(bounds))
    ]
    if not bounds:
        return out
    start = min(first for first, _ in bounds.values())
    final = max(last for _, last in bounds.values())
    for site, (first, last) in sorted(bounds.items()):
        if first > start:
            out.append(
                Finding(
                    "round_skipped",
                    severity,
                    site,
                    first,
                    f"first record is round {first}; other sites recorded from round {start} "
                    "(joined late, or earlier records are missing)",
                    f"records from round {start}",
                    _at(by_site[site][0]),
                )
            )
        if last < final:
            out.append(
                Finding(
                    "site_behind",
                    severity,
                    site,
                    last + 1,
                    f"last record is round {last}; other sites recorded up to round {final} "
                    "(dropped out, or later records are missing)",
                    f"records up to round {final}",
                    _at(by_site[site][-1]),
                )
            )
    return out
