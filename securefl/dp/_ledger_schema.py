"""The ledger's SQLite schema and terms, its version, and the in-place migration of old files.

Why a schema version: a ledger file outlives the code that wrote it (it holds
a site's whole spending history, across federations and years), so a newer
securefl must read an older file, and an older securefl must refuse a newer
one rather than misread it. Why migrate in place and never start afresh: a
discarded ledger is a reset budget.

Version 1 keyed a row by its round number alone, so two federations (or two
runs of one server) sharing the file collided on round 1. Version 2 keys a
row by (federation, run, round) and keeps the hash of the model the round
trained from, so that a site restarted after a crash can sign the record of
the round the crash interrupted. Rows migrated from version 1 keep federation
``""``, run ``""`` and model hash ``""`` (version 1 stored none of them); they
still count toward the site's budget exactly as before.
"""

from __future__ import annotations

import sqlite3

from securefl.errors import ConfigError, ProtocolError

__all__ = [
    "MAX_ROUND_ID",
    "SCHEMA_VERSION",
    "check_round_id",
    "create_or_migrate",
    "load_meta",
    "round_name",
]

SCHEMA_VERSION = "2"

_EVENTS_V2 = """
CREATE TABLE {name} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    federation TEXT NOT NULL DEFAULT '',
    run TEXT NOT NULL DEFAULT '',
    round_id INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'committed')),
    event TEXT NOT NULL,
    epsilon_after REAL NOT NULL,
    timestamp TEXT NOT NULL,
    token TEXT NOT NULL,
    model_hash TEXT NOT NULL DEFAULT '',
    UNIQUE (federation, run, round_id)
)
"""


def create_or_migrate(cur: sqlite3.Cursor, path: object) -> None:
    """Create the tables of a new ledger, or bring an older one to :data:`SCHEMA_VERSION`.

    Runs inside the caller's ``BEGIN IMMEDIATE`` transaction, so a crash in
    the middle of a migration leaves the version 1 file as it was.
    """
    cur.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    tables = {r[0] for r in cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    row = cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = None if row is None else str(row[0])
    if version is None and "events" not in tables:
        cur.execute(_EVENTS_V2.format(name="events"))
        return
    if version == SCHEMA_VERSION:
        return
    if version == "1":
        _migrate_1_to_2(cur)
        return
    raise ConfigError(
        f"ledger {path} has schema version {version!r}; this securefl reads versions 1 to "
        f"{SCHEMA_VERSION}: open it with a newer securefl"
    )


def _migrate_1_to_2(cur: sqlite3.Cursor) -> None:
    """Key rows by (federation, run, round): copy every row, then swap the tables."""
    cur.execute(_EVENTS_V2.format(name="events_v2"))
    cur.execute(
        "INSERT INTO events_v2 (federation, run, seq, round_id, status, event, epsilon_after, "
        "timestamp, token) SELECT '', '', seq, round_id, status, event, epsilon_after, "
        "timestamp, token FROM events ORDER BY seq"
    )
    cur.execute("DROP TABLE events")
    cur.execute("ALTER TABLE events_v2 RENAME TO events")
    cur.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))


def round_name(federation: str, run: str, round_id: int) -> str:
    """A round as messages name it: ``round 3`` or ``round 3 of run ab12 of 'fed'``."""
    out = f"round {round_id}"
    if run:
        out += f" of run {run[:12]}"
    if federation:
        out += f" of {federation!r}"
    return out


#: Round ids above this are refused (SQLite stores signed 64-bit integers; the wire
#: caps round ids at 2**53 - 1 already).
MAX_ROUND_ID = 2**53 - 1


def check_round_id(round_id: int) -> None:
    """Refuse what is not a round number a ledger row can hold."""
    if isinstance(round_id, bool) or not isinstance(round_id, int) or round_id < 0:
        raise ConfigError(f"round_id must be an integer >= 0, got {round_id!r}")
    if round_id > MAX_ROUND_ID:
        raise ProtocolError(f"round_id must be at most {MAX_ROUND_ID}, got {round_id}")


def load_meta(
    cur: sqlite3.Cursor, path: object, terms: dict[str, str], budget: float, allow_increase: bool
) -> float:
    """Write a new ledger's terms, or check a reopened one's; return the budget in force.

    The site, δ and accountant never change; the budget may be lowered, and
    raised only with ``allow_increase``.
    """
    stored = dict(cur.execute("SELECT key, value FROM meta").fetchall())
    wanted = {"schema_version": SCHEMA_VERSION, **terms}
    if not stored:
        rows = [*wanted.items(), ("epsilon_budget", repr(budget))]
        cur.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", rows)
        return budget
    for key, value in wanted.items():
        if stored.get(key) != value:
            raise ConfigError(
                f"ledger {path} was created with {key}={stored.get(key)!r}, "
                f"opened with {key}={value!r}; a ledger's {key} never changes"
            )
    old = float(stored["epsilon_budget"])
    if budget > old and not allow_increase:
        raise ConfigError(
            f"ledger {path} has epsilon_budget={old}; raising it to {budget} "
            f"needs allow_budget_increase=True"
        )
    if budget != old:
        cur.execute("UPDATE meta SET value = ? WHERE key = 'epsilon_budget'", (repr(budget),))
    return budget
