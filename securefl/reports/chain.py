"""Structural checks of one site's records: signatures and the hash chain.

Why a chain and not just signatures: a signature proves a record is the
site's, but a site (or whoever holds its files) could still drop an expensive
round, replay one, reorder them or keep two histories. Each record carries the
hash of the one before, so any of these shows up as a broken link. The site's
signed round ids must also increase along the chain within one run of the
server (``run``); a new run may count rounds from 1 again, and the chain goes
on through it without a gap or a fork.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import replace

from securefl.reports._canonical import GENESIS_HASH, verify_signature
from securefl.reports.findings import INFO, Finding, record_finding
from securefl.reports.records import LoadedRecord, record_run

__all__ = ["check_chain", "check_signatures"]


def check_signatures(
    records: list[LoadedRecord], public_key: bytes | None, federation: str
) -> list[Finding]:
    """Signature, roster membership and federation of every record of one site."""
    out: list[Finding] = []
    for loaded in records:
        rec = loaded.record
        if public_key is None:
            out.append(
                record_finding(
                    "unknown_site",
                    loaded,
                    f"site {rec['site']!r} is not on the roster",
                    "a site listed in roster.json",
                )
            )
            continue
        if rec["federation"] != federation:
            out.append(
                record_finding(
                    "federation_mismatch",
                    loaded,
                    f"record names federation {rec['federation']!r}",
                    repr(federation),
                )
            )
        if not verify_signature(rec, public_key):
            out.append(
                record_finding(
                    "bad_signature",
                    loaded,
                    "signature does not verify under the site's roster key",
                    "an Ed25519 signature by the roster key",
                )
            )
    return out


def _dedupe(records: list[LoadedRecord]) -> tuple[list[LoadedRecord], list[Finding]]:
    findings: list[Finding] = []
    by_hash: dict[str, LoadedRecord] = {}
    for loaded in records:
        first = by_hash.get(loaded.hash)
        if first is None:
            by_hash[loaded.hash] = loaded
            continue
        findings.append(
            record_finding(
                "duplicate_record",
                loaded,
                f"identical to the record at {first.path}:{first.line}",
                "each record exactly once",
            )
        )
    return list(by_hash.values()), findings


def _forks(unique: list[LoadedRecord]) -> tuple[set[int], list[Finding]]:
    children: dict[str, list[LoadedRecord]] = defaultdict(list)
    for loaded in unique:
        children[loaded.record["prev_hash"]].append(loaded)
    extras: set[int] = set()
    findings: list[Finding] = []
    for prev, kids in children.items():
        for extra in kids[1:]:
            extras.add(id(extra))
            what = "the start of the chain" if prev == GENESIS_HASH else f"record {prev[:12]}..."
            findings.append(
                record_finding(
                    "fork",
                    extra,
                    f"a second record follows {what} (first: round {kids[0].record['round_id']})",
                    "one successor per record",
                )
            )
    return extras, findings


def _link(loaded: LoadedRecord, parent: LoadedRecord | None) -> list[Finding]:
    rec = loaded.record
    if rec["prev_hash"] != GENESIS_HASH and parent is None:
        return [
            record_finding(
                "missing_round",
                loaded,
                f"the record before round {rec['round_id']} is missing",
                f"a record with hash {rec['prev_hash']}",
            )
        ]
    if (
        _same_run(parent, loaded)
        and parent is not None
        and (parent.record["round_id"] >= rec["round_id"])
    ):
        return [
            record_finding(
                "round_not_increasing",
                loaded,
                f"round {rec['round_id']} follows round {parent.record['round_id']}",
                f"a round id above {parent.record['round_id']}",
            )
        ]
    return []


def _order(
    loaded: LoadedRecord, parent: LoadedRecord | None, before: LoadedRecord | None
) -> list[Finding]:
    """File order must be chain order: each record right after its parent."""
    rec = loaded.record
    if before is None:
        bad = parent is not None
    else:
        bad = (parent is not None and parent is not before) or (
            _same_run(before, loaded) and before.record["round_id"] >= rec["round_id"]
        )
    if not bad:
        return []
    where = "first" if before is None else f"after round {before.record['round_id']}"
    return [
        record_finding(
            "reordered",
            loaded,
            f"round {rec['round_id']} is stored {where}",
            "records in chain order",
        )
    ]


def _skips(
    ordered: list[LoadedRecord], by_hash: dict[str, LoadedRecord], survived: set[int] | None
) -> list[Finding]:
    """A gap in the round ids: a warning, unless the server's round log explains it.

    A site that re-signs its chain without one expensive round leaves exactly
    such a gap, so a gap is never silent. With a verified round log
    (``survived``: the rounds the log says the site survived) a gap over
    rounds the site did not survive is informational; one over a round it did
    survive stays a warning here and fails in the cross-check.
    """
    findings: list[Finding] = []
    for before, after in itertools.pairwise(ordered):
        first, last = before.record["round_id"] + 1, after.record["round_id"] - 1
        if (
            last < first
            or not _same_run(before, after)
            or by_hash.get(after.record["prev_hash"]) is not before
        ):
            continue
        explained = survived is not None and not survived & set(range(first, last + 1))
        finding = record_finding(
            "round_skipped",
            after,
            f"the site signed no record for rounds {first} to {last}"
            + (" (the server's round log shows it did not take part)" if explained else ""),
            "a record for every round the site took part in",
        )
        findings.append(replace(finding, severity=INFO) if explained else finding)
    return findings


def check_chain(
    records: list[LoadedRecord], survived: set[int] | None = None
) -> tuple[list[LoadedRecord], list[Finding]]:
    """Check one site's records in file order.

    Returns the distinct records in round order within each run, runs in the
    order they first appear (what ε is recomputed from:
    every distinct record counts, so a fork is charged for both branches) and
    the findings: duplicate, fork, missing round, reorder, non-increasing or
    skipped round ids (``survived``: see :func:`_skips`).
    """
    unique, findings = _dedupe(records)
    by_hash = {loaded.hash: loaded for loaded in unique}
    fork_extras, fork_findings = _forks(unique)
    findings += fork_findings
    for index, loaded in enumerate(unique):
        parent = by_hash.get(loaded.record["prev_hash"])
        findings += _link(loaded, parent)
        if id(loaded) not in fork_extras:
            findings += _order(loaded, parent, unique[index - 1] if index else None)
    runs: dict[str, int] = {}
    for loaded in unique:
        runs.setdefault(record_run(loaded.record), len(runs))
    ordered = sorted(unique, key=lambda r: (runs[record_run(r.record)], r.record["round_id"]))
    return ordered, findings + _skips(ordered, by_hash, survived)


def _same_run(a: LoadedRecord | None, b: LoadedRecord) -> bool:
    return a is not None and record_run(a.record) == record_run(b.record)
