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
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securefl.errors import DataError, IntegrityError, ProtocolError
from securefl.hazmat.sign import SigningKey, signed_message, verify
from securefl.reports._canonical import GENESIS_HASH, canonical_bytes
from securefl.reports.findings import CODES, Finding
from securefl.reports.records import (
    RECORD_ACCOUNTANTS,
    BadLine,
    append_line,
    read_json_lines,
)

__all__ = [
    "DP_POLICY_FIELDS",
    "FINISHED",
    "LOG_FIELDS",
    "SERVER_LOG_DOMAIN",
    "SERVER_LOG_NAME",
    "SERVER_LOG_VERSION",
    "ServerLog",
    "ServerLogWriter",
    "dp_policy",
    "entry_hash",
    "parse_log_entry",
    "read_server_log",
]

SERVER_LOG_NAME = "server_log.jsonl"
SERVER_LOG_VERSION = 1
#: Domain of :func:`securefl.hazmat.sign.signed_message` for a log line.
SERVER_LOG_DOMAIN = "securefl/server-round-log/v1"
LOG_FIELDS = (
    "version",
    "federation",
    "round_id",
    "status",
    "cohort",
    "survivors",
    "submitted",
    "model_hash",
    "max_weight",
    "min_sites",
    "config",
    "dp",
    "reason",
    "prev_hash",
    "signature",
)
DP_POLICY_FIELDS = (
    "epsilon",
    "delta",
    "accountant",
    "local_epochs",
    "max_grad_norm",
    "batch_size",
    "noise_multiplier",
    "max_rounds",
)
#: The status of the closing line the server signs when the run ends.
FINISHED = "finished"
_STATUSES = ("aggregated", "abandoned", FINISHED)
_HEX = frozenset("0123456789abcdef")


def dp_policy(
    *,
    epsilon: float,
    delta: float,
    accountant: str,
    local_epochs: int,
    max_grad_norm: float,
    batch_size: int | None = None,
    noise_multiplier: float | None = None,
    max_rounds: int | None = None,
) -> dict[str, Any]:
    """The federation's DP policy as the log states it (validated like a parsed line).

    ``batch_size``, ``noise_multiplier`` and ``max_rounds`` are None when the
    federation does not fix them (a site's own loader; σ calibrated by each
    site from its own dataset size); the audit checks only what is stated.
    """
    return _parse_dp(
        {
            "epsilon": epsilon,
            "delta": delta,
            "accountant": accountant,
            "local_epochs": local_epochs,
            "max_grad_norm": max_grad_norm,
            "batch_size": batch_size,
            "noise_multiplier": noise_multiplier,
            "max_rounds": max_rounds,
        }
    )


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{name} must be a number, got {value!r}")
    try:
        out = float(value)
    except OverflowError:  # JSON integers are unbounded; 10**400 is no float
        raise DataError(f"{name} is too large to be a float") from None
    if not (math.isfinite(out) and out > 0):
        raise DataError(f"{name} must be finite and > 0, got {value!r}")
    return out


def _count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _hex(value: object, name: str, length: int) -> str:
    if not isinstance(value, str) or len(value) != length or not set(value) <= _HEX:
        raise DataError(f"{name} must be {length} lowercase hex digits")
    return value


def _names(value: object, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise DataError(f"{name} must be a list of site names")
    if value != sorted(set(value)):
        raise DataError(f"{name} must be sorted and without repeats")
    return list(value)


def _parse_dp(value: object) -> dict[str, Any]:
    if not isinstance(value, dict) or sorted(value) != sorted(DP_POLICY_FIELDS):
        raise DataError(f"dp must hold exactly {', '.join(DP_POLICY_FIELDS)}")
    if value["accountant"] not in RECORD_ACCOUNTANTS:
        raise DataError(f"dp.accountant must be one of {RECORD_ACCOUNTANTS}")
    delta = _positive(value["delta"], "dp.delta")
    if delta >= 1:
        raise DataError("dp.delta must be < 1")
    return {
        "epsilon": _positive(value["epsilon"], "dp.epsilon"),
        "delta": delta,
        "accountant": value["accountant"],
        "local_epochs": _count(value["local_epochs"], "dp.local_epochs", 1),
        "max_grad_norm": _positive(value["max_grad_norm"], "dp.max_grad_norm"),
        "batch_size": _optional(_count, value["batch_size"], "dp.batch_size", 1),
        "noise_multiplier": _optional(_positive, value["noise_multiplier"], "dp.noise_multiplier"),
        "max_rounds": _optional(_count, value["max_rounds"], "dp.max_rounds", 1),
    }


def _optional(parse: Any, value: object, *args: Any) -> Any:
    return None if value is None else parse(value, *args)


def parse_log_entry(obj: object) -> dict[str, Any]:
    """Validate one decoded log line; return it with float fields as floats."""
    if not isinstance(obj, dict):
        raise DataError("a log line must be a JSON object")
    missing = [f for f in LOG_FIELDS if f not in obj]
    if missing:
        raise DataError(f"missing field {missing[0]!r}")
    unknown = sorted(set(obj) - set(LOG_FIELDS))
    if unknown:
        raise DataError(f"unknown field {unknown[0]!r}")
    if isinstance(obj["version"], bool) or obj["version"] != SERVER_LOG_VERSION:
        raise DataError(f"unsupported server log version {obj['version']!r}")
    if not isinstance(obj["federation"], str) or not obj["federation"]:
        raise DataError("federation must be a non-empty string")
    if obj["status"] not in _STATUSES:
        raise DataError(f"status must be one of {_STATUSES}")
    cohort, survivors = _names(obj["cohort"], "cohort"), _names(obj["survivors"], "survivors")
    submitted = _names(obj["submitted"], "submitted")
    if not set(survivors) <= set(submitted) <= set(cohort):
        raise DataError("survivors must have submitted, and who submitted be in the cohort")
    if obj["status"] == FINISHED and (cohort or not obj["reason"]):
        raise DataError("a closing line lists no sites and says why the run ended")
    model_hash = obj["model_hash"]
    if model_hash is not None:
        _hex(model_hash, "model_hash", 64)
    if not isinstance(obj["config"], dict) or not isinstance(obj["reason"], str):
        raise DataError("config must be an object and reason a string")
    return {
        "version": SERVER_LOG_VERSION,
        "federation": obj["federation"],
        "round_id": _count(obj["round_id"], "round_id", 0),
        "status": obj["status"],
        "cohort": cohort,
        "survivors": survivors,
        "submitted": submitted,
        "model_hash": model_hash,
        "max_weight": _positive(obj["max_weight"], "max_weight"),
        "min_sites": _count(obj["min_sites"], "min_sites", 1),
        "config": obj["config"],
        "dp": _parse_dp(obj["dp"]),
        "reason": obj["reason"],
        "prev_hash": _hex(obj["prev_hash"], "prev_hash", 64),
        "signature": _hex(obj["signature"], "signature", 128),
    }


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
    with :class:`IntegrityError`.
    """

    def __init__(self, path: Path, *, federation: str, signing_key: SigningKey) -> None:
        self._path = Path(path)
        self._federation = federation
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
            for entry in log.rounds.values():
                self._prev_hash, self._last_round = entry_hash(entry), entry["round_id"]
            if log.closing is not None:
                self._prev_hash, self._closed = entry_hash(log.closing), True

    @property
    def path(self) -> Path:
        """The file the log goes to."""
        return self._path

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
            "round_id": round_id,
            "status": status,
            "cohort": sorted(cohort),
            "survivors": sorted(survivors),
            "submitted": sorted(submitted),
            "model_hash": model_hash,
            "max_weight": float(max_weight),
            "min_sites": min_sites,
            "config": dict(config),
            "dp": _parse_dp(dp),
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
            "round_id": self._last_round or 0,
            "status": FINISHED,
            "cohort": [],
            "survivors": [],
            "submitted": [],
            "model_hash": None,
            "max_weight": float(max_weight),
            "min_sites": min_sites,
            "config": {},
            "dp": _parse_dp(dp),
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
