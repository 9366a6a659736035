"""The server's signed round log: what it announced and who took part, per round.

Why: a site's records are the site's own word. A site that drops an expensive
round from its chain and re-signs the rest, or a folder whose records were
cut short, leaves a chain that verifies. The server saw every round: it signs
one line per round (cohort, survivors, status, the hash of the model it sent
and the DP policy and round settings it announced), hash-chained like the
records, so an audit can hold each site's records against it
(:mod:`securefl.reports.crosscheck`). The server signs with its own identity
key, listed in the roster (version 2) next to the sites' keys.

``simulate --out`` writes ``server_log.jsonl`` with :class:`ServerLogWriter`;
a server's state folder can use the same writer, one ``append`` per closed
round. Format: docs/records.md and docs/schema/server-round-log-v1.json.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securefl.errors import DataError, IntegrityError, ProtocolError
from securefl.hazmat.sign import SigningKey, signed_message, verify
from securefl.reports._canonical import GENESIS_HASH, canonical_bytes
from securefl.reports._log_entry import (
    DP_POLICY_FIELDS,
    FINISHED,
    LOG_FIELDS,
    OPTIONAL_LOG_FIELDS,
    SERVER_LOG_DOMAIN,
    SERVER_LOG_NAME,
    SERVER_LOG_VERSION,
    dp_policy,
    parse_dp,
    parse_log_entry,
)
from securefl.reports.findings import CODES, Finding
from securefl.reports.records import (
    BadLine,
    append_line,
    read_json_lines,
)

__all__ = [
    "DP_POLICY_FIELDS",
    "FINISHED",
    "LOG_FIELDS",
    "OPTIONAL_LOG_FIELDS",
    "SERVER_LOG_DOMAIN",
    "SERVER_LOG_NAME",
    "SERVER_LOG_VERSION",
    "ServerLog",
    "ServerLogWriter",
    "append_new_rounds",
    "dp_policy",
    "entry_hash",
    "parse_log_entry",
    "read_server_log",
]


def _message(entry: dict[str, Any]) -> bytes:
    body = {k: v for k, v in entry.items() if k != "signature"}
    return signed_message(SERVER_LOG_DOMAIN, canonical_bytes(body))


def entry_hash(entry: dict[str, Any]) -> str:
    """Hex SHA-256 of the canonical line (signature included): the next ``prev_hash``."""
    return hashlib.sha256(canonical_bytes(entry)).hexdigest()


def _verifies(entry: dict[str, Any], public_key: bytes) -> bool:
    try:
        verify(public_key, _message(entry), bytes.fromhex(entry["signature"]))
    except IntegrityError:
        return False
    return True


@dataclass(frozen=True)
class ServerLog:
    """A verified round log: its round lines by round id, and its closing line if signed.

    ``closing`` is None while the federation runs (or when the log was cut):
    only a closed log says that no round after its last one exists.
    """

    rounds: dict[int, dict[str, Any]]
    closing: dict[str, Any] | None = None

    @property
    def closed(self) -> bool:
        """Whether the server signed that the run ended."""
        return self.closing is not None


class _Reader:
    """Walk a log file line by line; collect the first problem of each kind."""

    def __init__(self, path: Path, federation: str, public_key: bytes | None) -> None:
        self.path, self.federation, self.key = Path(path), federation, public_key
        self.entries: dict[int, dict[str, Any]] = {}
        self.closing: dict[str, Any] | None = None
        self.findings: list[Finding] = []

    def fail(self, code: str, line: int, round_id: int | None, message: str, want: str) -> None:
        self.findings.append(
            Finding(code, CODES[code], None, round_id, message, want, f"{self.path}:{line}")
        )

    def read(self) -> None:
        prev, last = GENESIS_HASH, -1
        for item in read_json_lines(self.path):
            if isinstance(item, BadLine):
                self.fail("server_log_invalid", item.line, None, item.error, "a signed log line")
                continue
            number, raw, value = item
            try:
                entry = parse_log_entry(value)
            except DataError as exc:
                self.fail("server_log_invalid", number, None, str(exc), "a valid log line")
                continue
            self._check(entry, number, raw, prev, last)
            prev, last = entry_hash(entry), entry["round_id"]
            if entry["status"] == FINISHED:
                self.closing = entry
            else:
                self.entries[entry["round_id"]] = entry

    def _check(self, entry: dict[str, Any], line: int, raw: bytes, prev: str, last: int) -> None:
        rnd = entry["round_id"]
        closing = entry["status"] == FINISHED
        problems = [
            (canonical_bytes(entry) != raw, "the line is not its canonical encoding"),
            (entry["federation"] != self.federation, f"names federation {entry['federation']!r}"),
            (entry["prev_hash"] != prev, "does not follow the line before (chain broken)"),
            (rnd < last or (rnd == last and not closing), f"round {rnd} follows round {last}"),
            (self.closing is not None, "a line after the closing line"),
        ]
        for bad, message in problems:
            if bad:
                self.fail("server_log_invalid", line, rnd, message, "one hash chain, in order")
        if self.key is not None and not _verifies(entry, self.key):
            self.fail(
                "server_log_bad_signature",
                line,
                rnd,
                "signature does not verify under the roster's server key",
                "an Ed25519 signature by the server key",
            )


def read_server_log(
    path: Path, *, federation: str, public_key: bytes | None
) -> tuple[ServerLog | None, list[Finding]]:
    """Verify a round log; return it, or None when it cannot be trusted.

    ``public_key`` is the roster's server key; without one nothing can be
    verified (``server_not_on_roster``). Every problem is a failing finding.
    """
    reader = _Reader(path, federation, public_key)
    reader.read()
    if public_key is None:
        reader.fail(
            "server_not_on_roster",
            1,
            None,
            "the roster has no server key, so the round log cannot be verified",
            "a version 2 roster.json with the server's key",
        )
    if reader.findings:
        return None, reader.findings
    return ServerLog(reader.entries, reader.closing), []


class ServerLogWriter:
    """Append the server's signed round-log lines to a file, durably.

    Opening an existing log verifies it under this key and continues its
    chain (a restarted server extends the same log); anything else refuses
    with :class:`IntegrityError`. ``run``: the server's run id, written into
    every line (a restarted server keeps it, so its lines name one run).
    """

    def __init__(
        self, path: Path, *, federation: str, signing_key: SigningKey, run: str | None = None
    ) -> None:
        self._path = Path(path)
        self._federation = federation
        self._run = {"run": run} if run is not None else {}
        self._key = signing_key
        self._prev_hash = GENESIS_HASH
        self._last_round: int | None = None
        self._closed = False
        if self._path.exists():
            log, _ = read_server_log(
                self._path, federation=federation, public_key=signing_key.public_bytes()
            )
            if log is None:
                raise IntegrityError(f"{self._path}: the round log does not verify")
            runs = {e["run"] for e in log.rounds.values() if "run" in e}
            if run is not None and runs - {run}:
                raise IntegrityError(
                    f"{self._path}: the round log is of run {sorted(runs)[0]}, not {run}"
                )
            for entry in log.rounds.values():
                self._prev_hash, self._last_round = entry_hash(entry), entry["round_id"]
            if log.closing is not None:
                self._prev_hash, self._closed = entry_hash(log.closing), True

    @property
    def path(self) -> Path:
        """The file the log goes to."""
        return self._path

    @property
    def last_round(self) -> int | None:
        """The id of the last round logged (None: none yet)."""
        return self._last_round

    @property
    def closed(self) -> bool:
        """Whether the closing line is written (the run ended)."""
        return self._closed

    def append(
        self,
        *,
        round_id: int,
        status: str,
        cohort: tuple[str, ...] | list[str],
        survivors: tuple[str, ...] | list[str],
        submitted: tuple[str, ...] | list[str],
        model_hash: str | None,
        max_weight: float,
        min_sites: int,
        config: dict[str, Any],
        dp: dict[str, Any],
        reason: str = "",
    ) -> dict[str, Any]:
        """Sign, chain and durably append one round's line; return it.

        ``submitted``: every site the server received anything from in the
        round (its update or its first protocol message, after which the site
        has been charged): each must have a record, even of an abandoned round.
        """
        if self._closed:
            raise ProtocolError("the round log is closed: the run has ended")
        if self._last_round is not None and round_id <= self._last_round:
            raise ProtocolError(
                f"round {round_id} is not after the last logged round {self._last_round}"
            )
        entry: dict[str, Any] = {
            "version": SERVER_LOG_VERSION,
            "federation": self._federation,
            **self._run,
            "round_id": round_id,
            "status": status,
            "cohort": sorted(cohort),
            "survivors": sorted(survivors),
            "submitted": sorted(submitted),
            "model_hash": model_hash,
            "max_weight": float(max_weight),
            "min_sites": min_sites,
            "config": dict(config),
            "dp": parse_dp(dp),
            "reason": reason,
            "prev_hash": self._prev_hash,
        }
        entry = self._write(entry)
        self._last_round = round_id
        return entry

    def close(
        self, *, reason: str, max_weight: float, min_sites: int, dp: dict[str, Any]
    ) -> dict[str, Any]:
        """Sign the closing line: the run ended after the last logged round, and why.

        Without it an audit cannot tell a finished log from one cut short
        together with the records of its last rounds.
        """
        if self._closed:
            raise ProtocolError("the round log is already closed")
        entry: dict[str, Any] = {
            "version": SERVER_LOG_VERSION,
            "federation": self._federation,
            **self._run,
            "round_id": self._last_round or 0,
            "status": FINISHED,
            "cohort": [],
            "survivors": [],
            "submitted": [],
            "model_hash": None,
            "max_weight": float(max_weight),
            "min_sites": min_sites,
            "config": {},
            "dp": parse_dp(dp),
            "reason": reason or "finished",
            "prev_hash": self._prev_hash,
        }
        entry = self._write(entry)
        self._closed = True
        return entry

    def _write(self, entry: dict[str, Any]) -> dict[str, Any]:
        entry["signature"] = self._key.sign(_message(entry)).hex()
        entry = parse_log_entry(entry)  # refuse to write what an audit would reject
        append_line(self._path, canonical_bytes(entry))
        self._prev_hash = entry_hash(entry)
        return entry


def append_new_rounds(
    writer: ServerLogWriter, history: Iterable[Any], *, dp: dict[str, Any]
) -> int:
    """Sign into the round log every closed round it does not hold yet; return how many.

    ``history``: the driver's round summaries, oldest first. Keyed by round
    id, not by position: a restarted server's (or resumed simulation's)
    history starts with rounds its previous process may or may not have
    logged before it stopped (the journal is written first), and each must be
    logged exactly once.
    """
    last = writer.last_round if writer.last_round is not None else 0
    added = 0
    for summary in history:
        if summary.round <= last:
            continue
        writer.append(
            round_id=summary.round,
            status=summary.status,
            cohort=summary.cohort,
            survivors=summary.survivors,
            submitted=summary.submitted,
            model_hash=summary.model_hash,
            max_weight=summary.max_weight,
            min_sites=summary.min_sites,
            config=summary.config,
            dp=dp,
            reason=summary.reason,
        )
        last, added = summary.round, added + 1
    return added
