"""Build small federations of signed privacy records for the reports tests."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from securefl.dp.accounting import epsilon
from securefl.dp.events import DPEvent
from securefl.reports import RecordWriter, Roster
from securefl.reports._canonical import canonical_bytes, sign_record


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass
class Federation:
    """A simulation-like output directory: DIR/roster.json, DIR/records/<site>.jsonl."""

    root: Path
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)

    def path(self, site: str) -> Path:
        return self.root / "records" / f"{site}.jsonl"

    def lines(self, site: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.path(site).read_text().splitlines() if x.strip()]

    def write_lines(self, site: str, records: list[dict[str, Any]]) -> None:
        self.path(site).write_text("".join(canonical_bytes(r).decode() + "\n" for r in records))

    def resign(self, record: dict[str, Any], key: Ed25519PrivateKey | None = None) -> None:
        record["signature"] = sign_record(record, key or self.keys[record["site"]])


def make_event(n: int, batch: int, sigma: float, *, secure_rng: bool = True) -> DPEvent:
    q = batch / n
    return DPEvent(
        noise_multiplier=sigma,
        sample_rate=q,
        steps=max(1, round(1 / q)),
        max_grad_norm=1.0,
        secure_rng=secure_rng,
    )


def build(
    root: Path,
    sites: dict[str, int],
    *,
    rounds: int = 3,
    accountant: str = "rdp",
    sigma: float = 1.2,
    batch: int = 64,
    budget: float = 10.0,
    delta: float = 1e-5,
    secure_rng: bool = True,
) -> Federation:
    """Honest records: every claim is the site's accountant's ε after the round."""
    fed = Federation(root)
    (root / "records").mkdir(parents=True, exist_ok=True)
    for site, n in sites.items():
        key = Ed25519PrivateKey.generate()
        fed.keys[site] = key
        writer = RecordWriter(fed.path(site), federation="test-fed", site=site, signing_key=key)
        events: list[DPEvent] = []
        for r in range(rounds):
            event = make_event(n, batch, sigma, secure_rng=secure_rng)
            events.append(event)
            writer.append(
                round_id=r,
                event=event,
                accountant=accountant,
                delta=delta,
                epsilon=epsilon(events, delta=delta, accountant=accountant),
                epsilon_budget=budget,
                model_hash=hashlib.sha256(f"model {r}".encode()).hexdigest(),
                dataset_size=n,
                expected_batch_size=batch,
            )
    Roster("test-fed", {s: raw_public(k) for s, k in fed.keys.items()}).save(root / "roster.json")
    return fed
