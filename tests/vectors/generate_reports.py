"""Generate the known-answer vectors of securefl.reports.

    python tests/vectors/generate_reports.py

reports_epsilon.json: ε of SelfComposed(PoissonSampled(q, Gaussian(σ)), T) at δ
on a small grid, computed with Google dp-accounting directly (PLD with value
discretization 1e-3, pessimistic; and RDP), not with securefl.

reports_record.json: one privacy record signed with a fixed Ed25519 key, its
canonical bytes, hash and signature, encoded here with the standard library
only (json.dumps with sort_keys, compact separators, ASCII), so the vector
pins the documented format rather than securefl's implementation.

reports_must_fail.json: one site's chain of three records, valid, and a
must-fail (or must-warn) variant per check of the audit on stored lines and
on the policy along a chain: a repeated key, non-canonical bytes, a raised
budget, a changed δ, accountant or dataset size, δ ≥ 1/n, a round dropped and
the rest re-signed. Every variant is re-signed and re-linked with the test
key, so only the named check can catch it. Also one line of the server's
round log with its signed message (the securefl/signed/v1 field encoding,
written here with ``struct``) and a must-fail edit of it.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import struct
from pathlib import Path
from typing import Any

import dp_accounting
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

HERE = Path(__file__).parent
GRID_Q = (0.01, 0.1)
GRID_SIGMA = (0.8, 1.5)
GRID_STEPS = (10, 500)
DELTAS = (1e-5,)
PLD_DISCRETIZATION = 1e-3
DOMAIN = b"securefl/privacy-record/v1\x00"
# A fixed, public test key: never use it for anything else.
TEST_SEED = bytes(range(32))


def _event(q: float, sigma: float, steps: int) -> dp_accounting.DpEvent:
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
    )


def epsilon_vectors() -> list[dict[str, float | int]]:
    out = []
    for q in GRID_Q:
        for sigma in GRID_SIGMA:
            for steps in GRID_STEPS:
                for delta in DELTAS:
                    pld = pld_privacy_accountant.PLDAccountant(
                        value_discretization_interval=PLD_DISCRETIZATION
                    )
                    pld.compose(_event(q, sigma, steps))
                    rdp = rdp_privacy_accountant.RdpAccountant()
                    rdp.compose(_event(q, sigma, steps))
                    out.append(
                        {
                            "sample_rate": q,
                            "noise_multiplier": sigma,
                            "steps": steps,
                            "delta": delta,
                            "pld_epsilon": pld.get_epsilon(delta),
                            "rdp_epsilon": rdp.get_epsilon(delta),
                        }
                    )
    return out


def canonical(obj: dict[str, object]) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def record_vector() -> dict[str, object]:
    key = Ed25519PrivateKey.from_private_bytes(TEST_SEED)
    record: dict[str, object] = {
        "version": 1,
        "federation": "vector-fed",
        "site": "site-a",
        "round_id": 0,
        "event": {
            "noise_multiplier": 1.1,
            "sample_rate": 0.01,
            "sampling": "poisson",
            "steps": 100,
            "max_grad_norm": 1.0,
            "secure_rng": True,
            "kind": "dpsgd",
        },
        "dataset_size": 6400,
        "expected_batch_size": 64,
        "accountant": "pld",
        "delta": 1e-05,
        "epsilon": 0.5,
        "epsilon_budget": 3.0,
        "model_hash": hashlib.sha256(b"global model round 0").hexdigest(),
        "prev_hash": "0" * 64,
    }
    payload = DOMAIN + canonical(record)
    record["signature"] = key.sign(payload).hex()
    return {
        "private_key_seed": TEST_SEED.hex(),
        "public_key": key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex(),
        "record": record,
        "signing_payload": payload.decode("ascii"),
        "canonical": canonical(record).decode("ascii"),
        "record_hash": hashlib.sha256(canonical(record)).hexdigest(),
    }


SERVER_SEED = bytes(range(32, 64))
SERVER_LOG_DOMAIN = "securefl/server-round-log/v1"


def _chain_record(round_id: int, epsilon: float, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "version": 1,
        "federation": "vector-fed",
        "site": "site-a",
        "round_id": round_id,
        "event": {
            "noise_multiplier": 1.1,
            "sample_rate": 0.01,
            "sampling": "poisson",
            "steps": 100,
            "max_grad_norm": 1.0,
            "secure_rng": True,
            "kind": "dpsgd",
        },
        "dataset_size": 6400,
        "expected_batch_size": 64,
        "accountant": "rdp",
        "delta": 1e-05,
        # claims above any accountant's ε for these events: only the named check may fail
        "epsilon": epsilon,
        "epsilon_budget": 10.0,
        "model_hash": hashlib.sha256(f"global model round {round_id}".encode()).hexdigest(),
    }
    record.update(changes)
    return record


def _sign_chain(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    key = Ed25519PrivateKey.from_private_bytes(TEST_SEED)
    prev = "0" * 64
    out = []
    for rec in copy.deepcopy(records):
        rec.pop("signature", None)
        rec["prev_hash"] = prev
        rec["signature"] = key.sign(DOMAIN + canonical(rec)).hex()
        prev = hashlib.sha256(canonical(rec)).hexdigest()
        out.append(rec)
    return out


def _lines(records: list[dict[str, Any]]) -> list[str]:
    return [canonical(r).decode("ascii") for r in records]


def must_fail_vectors() -> dict[str, object]:
    honest = [_chain_record(r, 2.0 + r) for r in (1, 2, 3)]
    signed = _lines(_sign_chain(honest))

    def variant(index: int, **changes: Any) -> list[str]:
        records = copy.deepcopy(honest)
        for rec in records[index:]:
            rec.update(changes)
        return _lines(_sign_chain(records))

    duplicate = list(signed)
    duplicate[2] = duplicate[2].replace('"epsilon":', '"epsilon":0.1,"epsilon":', 1)
    spaced = list(signed)
    spaced[1] = json.dumps(json.loads(spaced[1]), sort_keys=True)
    integer = list(signed)
    integer[0] = integer[0].replace('"epsilon_budget":10.0', '"epsilon_budget":10', 1)
    unsorted = list(signed)
    reversed_keys = dict(reversed(list(json.loads(unsorted[1]).items())))
    unsorted[1] = json.dumps(reversed_keys, separators=(",", ":"))
    cases: list[tuple[str, str, list[str], str, str]] = [
        ("duplicate_key", "round 3 states epsilon twice", duplicate, "duplicate_key", "fail"),
        ("whitespace", "round 2 with spaces after separators", spaced, "non_canonical", "fail"),
        ("int_for_float", "epsilon_budget written as 10", integer, "non_canonical", "fail"),
        ("key_order", "round 2 with keys unsorted", unsorted, "non_canonical", "fail"),
        (
            "budget_raised",
            "budget 10 -> 20 from round 3",
            variant(2, epsilon_budget=20.0),
            "budget_raised",
            "fail",
        ),
        (
            "delta_changed",
            "delta 1e-5 -> 1e-4 from round 2",
            variant(1, delta=1e-4),
            "delta_changed",
            "fail",
        ),
        (
            "accountant_changed",
            "rdp -> pld from round 3",
            variant(2, accountant="pld"),
            "accountant_changed",
            "fail",
        ),
        (
            "dataset_size_changed",
            "6400 -> 12800 examples (same sample rate) from round 2",
            variant(1, dataset_size=12800, expected_batch_size=128),
            "dataset_size_changed",
            "fail",
        ),
        (
            "delta_too_large",
            "delta = 1/6400 in every round",
            variant(0, delta=1 / 6400),
            "delta_too_large",
            "fail",
        ),
        (
            "round_dropped",
            "round 2 removed and the rest re-linked and re-signed",
            _lines(_sign_chain([honest[0], honest[2]])),
            "round_skipped",
            "warn",
        ),
    ]
    key = Ed25519PrivateKey.from_private_bytes(TEST_SEED)
    return {
        "public_key": key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex(),
        "federation": "vector-fed",
        "site": "site-a",
        "valid": signed,
        "cases": [
            {"name": n, "what": w, "lines": lines, "code": c, "severity": sev}
            for n, w, lines, c, sev in cases
        ],
        "server_log": server_log_vector(),
    }


def _field(value: str | bytes) -> bytes:
    tag, body = (b"\x02", value.encode()) if isinstance(value, str) else (b"\x01", value)
    return tag + struct.pack(">I", len(body)) + body


def signed_message(domain: str, body: bytes) -> bytes:
    """The securefl/signed/v1 encoding of (domain, body), written independently."""
    return b"securefl/signed/v1\x00" + struct.pack(">I", 2) + _field(domain) + _field(body)


def server_log_vector() -> dict[str, object]:
    key = Ed25519PrivateKey.from_private_bytes(SERVER_SEED)
    entry: dict[str, Any] = {
        "version": 1,
        "federation": "vector-fed",
        "run": "0123456789abcdef0123456789abcdef",
        "round_id": 1,
        "status": "aggregated",
        "cohort": ["site-a", "site-b"],
        "survivors": ["site-a", "site-b"],
        "submitted": ["site-a", "site-b"],
        "model_hash": hashlib.sha256(b"global model round 1").hexdigest(),
        "max_weight": 6400.0,
        "min_sites": 2,
        "config": {"proximal_mu": 0.0},
        "dp": {
            "epsilon": 10.0,
            "delta": 1e-05,
            "accountant": "rdp",
            "local_epochs": 1,
            "max_grad_norm": 1.0,
            "batch_size": 64,
            "noise_multiplier": None,
            "max_rounds": 3,
        },
        "reason": "",
        "prev_hash": "0" * 64,
    }
    message = signed_message(SERVER_LOG_DOMAIN, canonical(entry))
    entry["signature"] = key.sign(message).hex()
    edited = dict(entry, survivors=["site-a"])
    unsubmitted = dict(entry, survivors=["site-a"], submitted=["site-a"])
    other_run = dict(entry, run="fedcba9876543210fedcba9876543210")
    closing: dict[str, Any] = dict(
        entry,
        status="finished",
        cohort=[],
        survivors=[],
        submitted=[],
        model_hash=None,
        config={},
        reason="reached max_rounds=1",
        prev_hash=hashlib.sha256(canonical(entry)).hexdigest(),
    )
    del closing["signature"]
    closing["signature"] = key.sign(signed_message(SERVER_LOG_DOMAIN, canonical(closing))).hex()
    return {
        "private_key_seed": SERVER_SEED.hex(),
        "public_key": key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex(),
        "entry": entry,
        "signed_message": message.hex(),
        "canonical": canonical(entry).decode("ascii"),
        "entry_hash": hashlib.sha256(canonical(entry)).hexdigest(),
        "closing": canonical(closing).decode("ascii"),
        "must_fail": [
            {
                "name": "survivors_edited",
                "line": canonical(edited).decode("ascii"),
                "code": "server_log_bad_signature",
            },
            {
                "name": "submitted_edited",
                "line": canonical(unsubmitted).decode("ascii"),
                "code": "server_log_bad_signature",
            },
            {
                "name": "run_edited",
                "line": canonical(other_run).decode("ascii"),
                "code": "server_log_bad_signature",
            },
        ],
    }


def main() -> None:
    (HERE / "reports_epsilon.json").write_text(
        json.dumps(
            {
                "source": "dp-accounting "
                + importlib.metadata.version("dp-accounting")
                + f", PLD value_discretization_interval={PLD_DISCRETIZATION} (pessimistic)"
                + "; RDP with default orders",
                "vectors": epsilon_vectors(),
            },
            indent=2,
        )
        + "\n"
    )
    (HERE / "reports_record.json").write_text(json.dumps(record_vector(), indent=2) + "\n")
    (HERE / "reports_must_fail.json").write_text(json.dumps(must_fail_vectors(), indent=2) + "\n")


if __name__ == "__main__":
    main()
