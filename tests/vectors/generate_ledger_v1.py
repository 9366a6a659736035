"""Write ``ledger_v1.sqlite``: a privacy ledger in the version 1 schema, for the migration test.

Run with the securefl of commit b023066 (the last one writing version 1)
on ``PYTHONPATH``::

    git archive b023066 securefl | tar -x -C /tmp/securefl-v1
    PYTHONPATH=/tmp/securefl-v1 python tests/vectors/generate_ledger_v1.py

The file holds site ``site-a`` (δ = 1e-5, rdp, budget ε = 8) with rounds 1
and 2 committed and round 3 pending (a crash during training).
``tests/dp/test_dp_ledger_migration.py`` checks that a current ledger opens
it in place, keeps every row (run ``""``) and still charges the pending one.
"""

from __future__ import annotations

from pathlib import Path

from securefl.dp import DPEvent, PrivacyLedger

OUT = Path(__file__).with_name("ledger_v1.sqlite")
ROUND = DPEvent(
    noise_multiplier=1.0, sample_rate=0.02, steps=50, max_grad_norm=1.0, secure_rng=True
)


def main() -> None:
    OUT.unlink(missing_ok=True)
    ledger = PrivacyLedger(OUT, site="site-a", epsilon_budget=8.0, delta=1e-5, accountant="rdp")
    for round_id in (1, 2):
        ledger.commit(ledger.reserve(round_id, ROUND), ROUND)
    ledger.reserve(3, ROUND)
    ledger._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # one self-contained file
    ledger._conn.execute("PRAGMA journal_mode=DELETE")
    ledger.close()


if __name__ == "__main__":
    main()
