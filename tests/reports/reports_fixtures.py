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
from securefl.hazmat.sign import SigningKey
from securefl.reports import RecordWriter, Roster
from securefl.reports._canonical import GENESIS_HASH, canonical_bytes, record_hash, sign_record
from securefl.reports.server_log import FINISHED, SERVER_LOG_NAME, ServerLogWriter, dp_policy


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass
class Federation:
    """A simulation-like output directory: DIR/roster.json, DIR/records/<site>.jsonl."""

    root: Path
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    server_key: SigningKey = field(default_factory=SigningKey.generate)

    @property
    def log_path(self) -> Path:
        return self.root / SERVER_LOG_NAME

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.log_path.read_text().splitlines() if x.strip()]

    def write_log(self, entries: list[dict[str, Any]]) -> None:
        self.log_path.write_text("".join(canonical_bytes(e).decode() + "\n" for e in entries))

    def rewrite_log(self, entries: list[dict[str, Any]], key: SigningKey | None = None) -> None:
        """The server (or whoever holds ``key``) writes and signs a whole new log."""
        self.log_path.unlink()
        writer = ServerLogWriter(
            self.log_path, federation="test-fed", signing_key=key or self.server_key
        )
        skip = ("version", "federation", "prev_hash", "signature")
        for e in entries:
            if e["status"] == FINISHED:
                writer.close(
                    reason=e["reason"],
                    max_weight=e["max_weight"],
                    min_sites=e["min_sites"],
                    dp=e["dp"],
                )
            else:
                writer.append(**{k: v for k, v in e.items() if k not in skip})

    def rewrite_chain(
        self, site: str, records: list[dict[str, Any]], *, reclaim: bool = True
    ) -> None:
        """What a site holding its own key can do: relink, re-claim ε, re-sign, store.

        ``reclaim``: set every claim to what the site's accountant gives for
        the records kept, so the arithmetic of the rewritten chain is honest.
        """
        prev = GENESIS_HASH
        events: list[DPEvent] = []
        for rec in records:
            events.append(DPEvent.from_dict(rec["event"]))
            if reclaim:
                rec["epsilon"] = epsilon(events, delta=rec["delta"], accountant=rec["accountant"])
            rec["prev_hash"] = prev
            self.resign(rec)
            prev = record_hash(rec)
        self.write_lines(site, records)

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
    server_log: bool = False,
) -> Federation:
    """Honest records: every claim is the site's accountant's ε after the round.

    ``server_log``: also the server's signed round log (every site survives
    every round, the model of round r hashes "model r"), closed after the last
    round, and its key in the roster.
    """
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
                model_hash=model_hash(r),
                dataset_size=n,
                expected_batch_size=batch,
            )
    server = fed.server_key.public_bytes() if server_log else None
    Roster("test-fed", {s: raw_public(k) for s, k in fed.keys.items()}, server).save(
        root / "roster.json"
    )
    if server_log:
        log = ServerLogWriter(fed.log_path, federation="test-fed", signing_key=fed.server_key)
        policy = dp_policy(
            epsilon=budget,
            delta=delta,
            accountant=accountant,
            local_epochs=1,
            max_grad_norm=1.0,
            batch_size=batch,
        )
        for r in range(rounds):
            log.append(
                round_id=r,
                status="aggregated",
                cohort=sorted(sites),
                survivors=sorted(sites),
                submitted=sorted(sites),
                model_hash=model_hash(r),
                max_weight=float(max(sites.values())),
                min_sites=2,
                config={},
                dp=policy,
            )
        log.close(
            reason=f"reached max_rounds={rounds}",
            max_weight=float(max(sites.values())),
            min_sites=2,
            dp=policy,
        )
    return fed


def model_hash(r: int) -> str:
    return hashlib.sha256(f"model {r}".encode()).hexdigest()
