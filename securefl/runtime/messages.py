"""Round-level messages between the server driver and sites.

These carry the federation's own bookkeeping (who is present, which round,
the global model, metrics); the aggregator's messages travel beside them
under their own stage names. Every payload is a msgpack map with a fixed set
of keys, checked on decode.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from securefl.errors import WireError
from securefl.wire import Limits, pack, unpack

__all__ = [
    "BYE",
    "FINISH",
    "HELLO",
    "REPORT",
    "ROUND_END",
    "ROUND_START",
    "RUNTIME_STAGES",
    "Finish",
    "Hello",
    "Report",
    "RoundEnd",
    "RoundStart",
    "decode",
]

HELLO = "fed/hello"
BYE = "fed/bye"
ROUND_START = "fed/round-start"
REPORT = "fed/report"
ROUND_END = "fed/round-end"
FINISH = "fed/finish"
#: The most metrics one report may carry.
MAX_METRICS = 16
RUNTIME_STAGES = frozenset({HELLO, BYE, ROUND_START, REPORT, ROUND_END, FINISH})
#: The most sites a round-start or round-end message may name.
MAX_COHORT = 4096
#: The most tensors a round-start's parameter spec may describe.
MAX_TENSORS = 4096
#: The length of a model history head a hello names (SHA-256).
HEAD_LEN = 32
#: The longest free-text reason a round-end or finish message may carry.
MAX_REASON_LEN = 65_536

# Decode limits, checked before anything is built (securefl.wire.scan): each
# message may hold only what it legitimately carries. A spec entry is a name,
# a dtype and a shape list (up to 6 values for a 4-d tensor), hence 8 per tensor.
_RUN_ID = re.compile(r"[0-9a-f]{1,64}")
_ROUND_START_LIMITS = Limits(
    max_items=64 + MAX_COHORT + 8 * MAX_TENSORS,
    max_depth=4,
    max_array_len=max(MAX_COHORT, MAX_TENSORS),
    max_map_len=64,
    max_str_len=4096,
)
_REPORT_LIMITS = Limits(
    max_items=8 + 2 * MAX_METRICS, max_depth=2, max_array_len=0, max_map_len=MAX_METRICS,
    max_str_len=64, max_bin_len=0,
)  # fmt: skip
_ROUND_END_LIMITS = Limits(
    max_items=16 + MAX_COHORT, max_depth=2, max_array_len=MAX_COHORT, max_map_len=3,
    max_str_len=MAX_REASON_LEN, max_bin_len=0,
)  # fmt: skip
_HELLO_LIMITS = Limits(
    max_bytes=256, max_items=5, max_depth=1, max_array_len=0, max_map_len=2, max_str_len=16,
    max_bin_len=HEAD_LEN,
)  # fmt: skip
_FINISH_LIMITS = Limits(
    max_items=16, max_depth=1, max_array_len=0, max_map_len=3, max_str_len=MAX_REASON_LEN
)


@dataclass(frozen=True, kw_only=True)
class Hello:
    """A site (re)joins, naming how much of the he model history it holds and verified.

    ``aggregates`` is how many aggregates the site applied and ``head`` its hash
    chain's head after them (:mod:`securefl.runtime.encrypted_model`). The server
    recomputes the head; when they agree it sends only the aggregates past the
    claim, so a site that kept its state (a rejoin after a transport error) is
    not sent the whole history again. An empty payload holds nothing: a site
    that lost its state, a plain or mask site, or an older site.
    """

    aggregates: int = 0
    head: bytes = b""
    LIMITS: ClassVar[Limits] = _HELLO_LIMITS

    def to_bytes(self) -> bytes:
        if not self.head:
            return b""
        return pack({"aggregates": self.aggregates, "head": self.head})

    @classmethod
    def from_bytes(cls, data: bytes) -> Hello:
        if not data:
            return cls()
        obj = _expect(data, {"aggregates", "head"}, cls.LIMITS)
        count, head = obj["aggregates"], obj["head"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise WireError(f"hello aggregates must be an integer >= 0, got {count!r}")
        if not isinstance(head, bytes) or len(head) != HEAD_LEN:
            raise WireError(f"hello head must be {HEAD_LEN} bytes")
        return cls(aggregates=count, head=head)


@dataclass(frozen=True, kw_only=True)
class RoundStart:
    """The server opens a round: the cohort, the global model, and settings.

    ``run``: the server's run id (fixed for the life of its state folder, so
    across restarts too). With the federation and the round number it names
    a round uniquely, which is how a site's ledger and round log key it.
    """

    cohort: tuple[str, ...]
    model: bytes
    spec: dict[str, Any]
    max_weight: float
    min_sites: int
    run: str
    config: dict[str, Any] = field(default_factory=dict)
    LIMITS: ClassVar[Limits] = _ROUND_START_LIMITS

    def to_bytes(self) -> bytes:
        return pack(
            {
                "cohort": list(self.cohort),
                "model": self.model,
                "spec": self.spec,
                "max_weight": self.max_weight,
                "min_sites": self.min_sites,
                "config": self.config,
                "run": self.run,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> RoundStart:
        """Decode and check every field's type and range (the site's policy checks follow).

        A server is not trusted with the settings it announces: a NaN weight
        bound, a cohort listing a site twice or a non-integer site minimum is
        refused here, before the site reserves any privacy for the round.
        """
        obj = _expect(
            data,
            {"cohort", "model", "spec", "max_weight", "min_sites", "config", "run"},
            cls.LIMITS,
        )
        cohort = obj["cohort"]
        if not isinstance(cohort, list) or not all(isinstance(s, str) and s for s in cohort):
            raise WireError("round-start cohort must be a list of site names")
        if cohort != sorted(set(cohort)):
            raise WireError("round-start cohort must be sorted and list each site once")
        if not isinstance(obj["model"], bytes) or not isinstance(obj["spec"], dict):
            raise WireError("round-start model must be bytes and spec a map")
        config = obj["config"]
        if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
            raise WireError("round-start config must be a map with string keys")
        max_weight = obj["max_weight"]
        if not _is_number(max_weight) or not (math.isfinite(max_weight) and max_weight > 0):
            raise WireError(f"round-start max_weight must be finite and > 0, got {max_weight!r}")
        min_sites = obj["min_sites"]
        if isinstance(min_sites, bool) or not isinstance(min_sites, int) or min_sites < 2:
            raise WireError(f"round-start min_sites must be an integer >= 2, got {min_sites!r}")
        run = obj["run"]
        if not isinstance(run, str) or not _RUN_ID.fullmatch(run):
            raise WireError("round-start run must be 1 to 64 lowercase hex digits")
        return cls(
            cohort=tuple(cohort),
            model=obj["model"],
            spec=obj["spec"],
            max_weight=float(max_weight),
            min_sites=min_sites,
            config=config,
            run=run,
        )


@dataclass(frozen=True, kw_only=True)
class Report:
    """A site's validation metrics for the round, for early stopping.

    Deliberately small: a handful of finite numbers, no example count (in
    ``mask`` mode the weight travels only inside the masked vector). The
    server sees these in the clear in every mode; see the threat models.
    """

    metrics: dict[str, float]
    LIMITS: ClassVar[Limits] = _REPORT_LIMITS

    def to_bytes(self) -> bytes:
        return pack({"metrics": self.metrics})

    @classmethod
    def from_bytes(cls, data: bytes) -> Report:
        obj = _expect(data, {"metrics"}, cls.LIMITS)
        metrics = obj["metrics"]
        if not isinstance(metrics, dict) or len(metrics) > MAX_METRICS:
            raise WireError(f"report metrics must be a map of at most {MAX_METRICS} entries")
        clean: dict[str, float] = {}
        for key, value in metrics.items():
            if not isinstance(key, str) or not 0 < len(key) <= 64:
                raise WireError("report metric names must be short strings")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise WireError(f"report metric {key!r} is not a number")
            if not math.isfinite(value):
                raise WireError(f"report metric {key!r} is not finite")
            clean[key] = float(value)
        return cls(metrics=clean)


@dataclass(frozen=True, kw_only=True)
class RoundEnd:
    """How a round ended: ``aggregated`` (with survivors) or ``abandoned`` (with why)."""

    status: str
    survivors: tuple[str, ...] = ()
    reason: str = ""
    LIMITS: ClassVar[Limits] = _ROUND_END_LIMITS

    def to_bytes(self) -> bytes:
        return pack(
            {"status": self.status, "survivors": list(self.survivors), "reason": self.reason}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> RoundEnd:
        obj = _expect(data, {"status", "survivors", "reason"}, cls.LIMITS)
        if obj["status"] not in ("aggregated", "abandoned"):
            raise WireError("round-end status must be 'aggregated' or 'abandoned'")
        survivors = obj["survivors"]
        if not isinstance(survivors, list) or not all(isinstance(s, str) for s in survivors):
            raise WireError("round-end survivors must be a list of site names")
        if not isinstance(obj["reason"], str):
            raise WireError("round-end reason must be a string")
        return cls(status=obj["status"], survivors=tuple(survivors), reason=obj["reason"])


@dataclass(frozen=True, kw_only=True)
class Finish:
    """Training is over: the final global model and why it stopped."""

    model: bytes
    reason: str
    rounds: int
    LIMITS: ClassVar[Limits] = _FINISH_LIMITS

    def to_bytes(self) -> bytes:
        return pack({"model": self.model, "reason": self.reason, "rounds": self.rounds})

    @classmethod
    def from_bytes(cls, data: bytes) -> Finish:
        obj = _expect(data, {"model", "reason", "rounds"}, cls.LIMITS)
        if not isinstance(obj["model"], bytes) or not isinstance(obj["reason"], str):
            raise WireError("finish model must be bytes and reason a string")
        rounds = obj["rounds"]
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise WireError(f"finish rounds must be an integer >= 0, got {rounds!r}")
        return cls(model=obj["model"], reason=obj["reason"], rounds=rounds)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _expect(data: bytes, keys: set[str], limits: Limits) -> dict[str, Any]:
    obj = unpack(data, limits=limits)
    if not isinstance(obj, dict) or set(obj) != keys:
        raise WireError(f"malformed message: expected fields {sorted(keys)}")
    return obj


def decode(data: bytes, cls: type[Any]) -> Any:
    """Decode ``data`` as ``cls``; wrap any type error as a WireError."""
    try:
        return cls.from_bytes(data)
    except (TypeError, ValueError, KeyError, ArithmeticError) as exc:
        if isinstance(exc, WireError):
            raise
        raise WireError(f"malformed {cls.__name__}: {exc}") from None
