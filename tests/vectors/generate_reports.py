"""Generate the known-answer vectors of securefl.reports.

    python tests/vectors/generate_reports.py

reports_epsilon.json: ε of SelfComposed(PoissonSampled(q, Gaussian(σ)), T) at δ
on a small grid, computed with Google dp-accounting directly (PLD with value
discretization 1e-3, pessimistic; and RDP), not with securefl.

reports_record.json: one privacy record signed with a fixed Ed25519 key, its
canonical bytes, hash and signature, encoded here with the standard library
only (json.dumps with sort_keys, compact separators, ASCII), so the vector
pins the documented format rather than securefl's implementation.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

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


if __name__ == "__main__":
    main()
