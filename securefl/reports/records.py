"""Signed, hash-chained privacy records: one JSON line per site per round.

Why records at all: a site's ledger enforces its budget, but nobody else can
see the ledger. A record states what the site did in one round (the DP event)
and what it claims that cost (ε), signed with the site's identity key and
chained to the previous record, so anyone holding the file can check the
arithmetic, and notice a removed, reordered or rewritten round.
The format is documented in docs/records.md and docs/schema/privacy-record-v1.json.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from securefl.dp.events import DPEvent
from securefl.errors import ConfigError, DataError, IntegrityError, ProtocolError
from securefl.reports._canonical import (
    GENESIS_HASH,
    DuplicateKeyError,
    canonical_bytes,
    record_hash,
    sign_record,
    strict_loads,
    verify_signature,
)

__all__ = [
    "OPTIONAL_FIELDS",
    "RECORD_ACCOUNTANTS",
    "RECORD_FIELDS",
    "RECORD_VERSION",
    "BadLine",
    "LoadedRecord",
    "RecordWriter",
    "append_line",
    "parse_record",
    "read_json_lines",
    "read_record_file",
    "record_run",
]

RECORD_VERSION = 1
RECORD_ACCOUNTANTS = ("prv", "rdp", "pld")
RECORD_FIELDS = (
    "version",
    "federation",
    "site",
    "round_id",
    "event",
    "dataset_size",
    "expected_batch_size",
    "accountant",
    "delta",
    "epsilon",
    "epsilon_budget",
    "model_hash",
    "prev_hash",
    "signature",
)
#: Optional fields: ``run``, the server's run id (absent or empty in records written
#: before runs were named); with the federation and ``round_id`` it names the round.
OPTIONAL_FIELDS = ("run",)
_RUN = re.compile(r"^[0-9a-f]{0,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX128 = re.compile(r"^[0-9a-f]{128}$")


def _int(rec: dict[str, Any], name: str, minimum: int) -> int:
    value = rec.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _float(rec: dict[str, Any], name: str) -> float:
    value = rec.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{name} must be a number, got {value!r}")
    try:
        out = float(value)
    except OverflowError:  # JSON integers are unbounded; 10**400 is no float
        raise DataError(f"{name} is too large to be a float") from None
    if not math.isfinite(out):
        raise DataError(f"{name} must be finite, got {value!r}")
    return out


def _str(rec: dict[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = rec.get(name)
    if not isinstance(value, str) or not value or (pattern and not pattern.match(value)):
        raise DataError(f"{name} is not a valid value: {value!r}")
    return value


def parse_record(obj: object) -> dict[str, Any]:
    """Validate one decoded JSON line; return it with float fields as floats.

    Integers written for float fields (``"epsilon": 1``) are normalised to
    floats, because the canonical form of the float 1.0 is what was signed; a
    *file* holding such a line still fails the audit, which requires every
    stored line to be byte-equal to its canonical encoding. Raises
    :class:`DataError` naming the first bad field.
    """
    if not isinstance(obj, dict):
        raise DataError("a record must be a JSON object")
    missing = [f for f in RECORD_FIELDS if f not in obj]
    if missing:
        raise DataError(f"missing field {missing[0]!r}")
    unknown = sorted(set(obj) - set(RECORD_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise DataError(f"unknown field {unknown[0]!r}")
    if obj["version"] != RECORD_VERSION or isinstance(obj["version"], bool):
        raise DataError(f"unsupported record version {obj['version']!r}")
    rec: dict[str, Any] = {
        "version": RECORD_VERSION,
        "federation": _str(obj, "federation"),
        "site": _str(obj, "site"),
        "round_id": _int(obj, "round_id", 0),
        "dataset_size": _int(obj, "dataset_size", 1),
        "expected_batch_size": _int(obj, "expected_batch_size", 1),
        "delta": _float(obj, "delta"),
        "epsilon": _float(obj, "epsilon"),
        "epsilon_budget": _float(obj, "epsilon_budget"),
        "model_hash": _str(obj, "model_hash", _HEX64),
        "prev_hash": _str(obj, "prev_hash", _HEX64),
        "signature": _str(obj, "signature", _HEX128),
    }
    if "run" in obj:
        run = obj["run"]
        if not isinstance(run, str) or not _RUN.match(run):
            raise DataError(f"run must be 0-64 lowercase hex digits, got {run!r}")
        rec["run"] = run
    accountant = obj["accountant"]
    if accountant not in RECORD_ACCOUNTANTS:
        raise DataError(f"accountant must be one of {RECORD_ACCOUNTANTS}, got {accountant!r}")
    rec["accountant"] = accountant
    if not 0.0 < rec["delta"] < 1.0:
        raise DataError(f"delta must be in (0, 1), got {rec['delta']!r}")
    if rec["epsilon"] < 0 or rec["epsilon_budget"] <= 0:
        raise DataError("epsilon must be >= 0 and epsilon_budget > 0")
    try:
        rec["event"] = DPEvent.from_dict(obj["event"]).to_dict()
    except ConfigError as exc:
        raise DataError(f"event: {exc}") from None
    return rec


def record_run(record: dict[str, Any]) -> str:
    """The run a record names (``""`` for a record written before runs were named)."""
    return str(record.get("run", ""))


@dataclass(frozen=True)
class LoadedRecord:
    """A record read from a file, with where it came from (for findings).

    ``canonical`` is False when the stored line is not byte-equal to the
    canonical encoding of the record (e.g. spaces, key order, ``1`` for
    ``1.0``): what was hashed and signed is then not what is stored.
    """

    record: dict[str, Any]
    path: Path
    line: int
    canonical: bool = True

    @property
    def hash(self) -> str:
        """The hash the next record's ``prev_hash`` must carry."""
        return record_hash(self.record)


class BadLine(NamedTuple):
    """A line that could not be read as a record, and why (``code`` is a finding code)."""

    line: int
    error: str
    code: str = "malformed_record"


def read_json_lines(
    path: Path,
) -> Iterator[tuple[int, bytes, Any] | BadLine]:
    """Each non-empty line of ``path`` decoded strictly: ``(number, raw, value)`` or a BadLine.

    Shared by the record and the server round-log readers: repeated keys and
    non-JSON lines become :class:`BadLine` (codes ``duplicate_key`` and
    ``malformed_record``).
    """
    try:
        raw_file = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    for number, raw in enumerate(raw_file.split(b"\n"), start=1):
        if not raw:
            continue
        try:
            yield number, raw, strict_loads(raw)
        except DuplicateKeyError as exc:
            yield BadLine(
                number, f"{exc}: a reader could not tell which value was signed", "duplicate_key"
            )
        except UnicodeDecodeError:
            yield BadLine(number, "not UTF-8 text")
        except (ValueError, RecursionError) as exc:  # not JSON, nested too deep, a huge number
            yield BadLine(number, f"not JSON ({type(exc).__name__})")


def read_record_file(path: Path) -> tuple[list[LoadedRecord], list[BadLine]]:
    """Read a JSON-lines file: (valid records, lines that are not records).

    A valid record whose line is not its canonical encoding is returned with
    ``canonical=False`` (the audit fails it) rather than dropped, so the rest
    of its chain can still be checked.
    """
    good: list[LoadedRecord] = []
    bad: list[BadLine] = []
    for item in read_json_lines(path):
        if isinstance(item, BadLine):
            bad.append(item)
            continue
        number, raw, value = item
        try:
            record = parse_record(value)
        except DataError as exc:
            bad.append(BadLine(number, str(exc)))
            continue
        good.append(LoadedRecord(record, path, number, canonical_bytes(record) == raw))
    return good, bad


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_line(path: Path, line: bytes) -> None:
    """Append ``line`` and a newline to ``path`` and fsync (the directory too when created)."""
    created = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as fh:
        fh.write(line + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    if created:
        _fsync_dir(path.parent)


class RecordWriter:
    """Append a site's signed records to its JSON-lines file, durably.

    Opening an existing file verifies the whole chain under this site's key
    and continues it, so a restarted site extends the same chain instead of
    starting a second one (which an audit would report as a fork). Round ids
    increase within a run; a new run of the server may count from 1 again,
    and the chain goes on through it. A torn last
    line (a crash during a write that was never fsynced) is cut off; any other
    damage refuses to continue with :class:`IntegrityError`.
    """

    def __init__(
        self,
        path: Path,
        *,
        federation: str,
        site: str,
        signing_key: Ed25519PrivateKey,
    ) -> None:
        self._path = Path(path)
        self._federation = federation
        self._site = site
        self._key = signing_key
        self._public = signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._prev_hash = GENESIS_HASH
        self._last_round: int | None = None
        self._last_of_run: dict[str, int] = {}
        if self._path.exists():
            self._resume()

    @property
    def path(self) -> Path:
        """The file records go to."""
        return self._path

    @property
    def last_round(self) -> int | None:
        """The round id of the last record in the chain (None: no record yet)."""
        return self._last_round

    def last_round_of(self, run: str) -> int | None:
        """The last round id recorded in ``run`` (None: no record of that run)."""
        return self._last_of_run.get(run)

    def recorded(self, run: str, round_id: int) -> bool:
        """Whether the chain holds a record of ``round_id`` of ``run`` (ids increase per run)."""
        last = self._last_of_run.get(run)
        return last is not None and round_id <= last

    def _resume(self) -> None:
        raw = self._path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            cut = raw.rfind(b"\n") + 1
            with self._path.open("r+b") as fh:
                fh.truncate(cut)
                fh.flush()
                os.fsync(fh.fileno())
        records, bad = read_record_file(self._path)
        if bad:
            raise IntegrityError(f"{self._path}: line {bad[0].line} is not a valid record")
        for loaded in records:
            rec = loaded.record
            ok = (
                loaded.canonical
                and rec["prev_hash"] == self._prev_hash
                and rec["federation"] == self._federation
                and rec["site"] == self._site
                and self._after_last(record_run(rec), rec["round_id"])
                and verify_signature(rec, self._public)
            )
            if not ok:
                raise IntegrityError(f"{self._path}: the record chain does not verify")
            self._prev_hash = loaded.hash
            self._last_round = rec["round_id"]
            self._last_of_run[record_run(rec)] = rec["round_id"]

    def _after_last(self, run: str, round_id: int) -> bool:
        last = self._last_of_run.get(run)
        return last is None or round_id > last

    def append(
        self,
        *,
        round_id: int,
        event: DPEvent,
        accountant: str,
        delta: float,
        epsilon: float,
        epsilon_budget: float,
        model_hash: str,
        dataset_size: int,
        expected_batch_size: int,
        run: str = "",
    ) -> dict[str, Any]:
        """Sign, chain and durably append the record of one round of ``run``; return it.

        Refuses (ProtocolError) a round id not after the last one recorded in
        the same run: two records for one round are exactly what an audit flags.
        """
        if not self._after_last(run, round_id):
            raise ProtocolError(
                f"round {round_id} is not after the last recorded round "
                f"{self._last_of_run[run]} of this run"
            )
        unsigned: dict[str, Any] = {
            "version": RECORD_VERSION,
            "federation": self._federation,
            "site": self._site,
            "round_id": round_id,
            "event": event.to_dict(),
            "dataset_size": dataset_size,
            "expected_batch_size": expected_batch_size,
            "accountant": accountant,
            "delta": float(delta),
            "epsilon": float(epsilon),
            "epsilon_budget": float(epsilon_budget),
            "model_hash": model_hash,
            "prev_hash": self._prev_hash,
            "signature": "0" * 128,
        }
        if run:
            unsigned["run"] = run
        unsigned["signature"] = sign_record(unsigned, self._key)
        record = parse_record(unsigned)  # refuse to write what an audit would reject
        append_line(self._path, canonical_bytes(record))
        self._prev_hash = record_hash(record)
        self._last_round = round_id
        self._last_of_run[run] = round_id
        return record
