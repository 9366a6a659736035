"""One line of the server's round log: its fields, and validation of a decoded line.

Why apart from :mod:`securefl.reports.server_log`: the format (what a line
holds, what each field may be) is read by the audit, written by the server
and documented in docs/schema/server-round-log-v1.json; signing, chaining and
reading files are the log's business.
"""

from __future__ import annotations

import math
from typing import Any

from securefl.errors import DataError
from securefl.reports.records import RECORD_ACCOUNTANTS

__all__ = [
    "DP_POLICY_FIELDS",
    "FINISHED",
    "LOG_FIELDS",
    "OPTIONAL_LOG_FIELDS",
    "SERVER_LOG_DOMAIN",
    "SERVER_LOG_NAME",
    "SERVER_LOG_VERSION",
    "dp_policy",
    "parse_dp",
    "parse_log_entry",
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
#: Fields a line may lack: ``run`` (the server's run id, the same across its
#: restarts; absent in logs written before runs were named).
OPTIONAL_LOG_FIELDS = ("run",)
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
    return parse_dp(
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


def parse_dp(value: object) -> dict[str, Any]:
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
    unknown = sorted(set(obj) - set(LOG_FIELDS) - set(OPTIONAL_LOG_FIELDS))
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
    run = {}
    if "run" in obj:
        if not isinstance(obj["run"], str) or not 1 <= len(obj["run"]) <= 64:
            raise DataError("run must be 1 to 64 lowercase hex digits")
        run = {"run": _hex(obj["run"], "run", len(obj["run"]))}
    return {
        "version": SERVER_LOG_VERSION,
        "federation": obj["federation"],
        **run,
        "round_id": _count(obj["round_id"], "round_id", 0),
        "status": obj["status"],
        "cohort": cohort,
        "survivors": survivors,
        "submitted": submitted,
        "model_hash": model_hash,
        "max_weight": _positive(obj["max_weight"], "max_weight"),
        "min_sites": _count(obj["min_sites"], "min_sites", 1),
        "config": obj["config"],
        "dp": parse_dp(obj["dp"]),
        "reason": obj["reason"],
        "prev_hash": _hex(obj["prev_hash"], "prev_hash", 64),
        "signature": _hex(obj["signature"], "signature", 128),
    }
