"""What the server's status page shows, and its log lines, from the envelopes it moves.

The transport sees every envelope's header, the round starts and ends the
driver sends and the reports sites send, so it can answer ``GET /status``
without reaching into the driver. Every admission, refusal (with its
reason), stage change, dropout and round result is one log line; with
:class:`JsonLogFormatter` each is one JSON object for machines.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import threading
import time
from typing import Any, Protocol

from securefl.errors import WireError
from securefl.runtime.messages import FINISH, REPORT, ROUND_END, ROUND_START, Report, RoundEnd
from securefl.wire import Envelope

__all__ = ["JsonLogFormatter", "StatusBoard", "progress_logger", "status_html"]

log = logging.getLogger("securefl.server")

_NOT_RUNNING = ("waiting for sites", "closed", "finished")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``event`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if isinstance(event, dict):
            out.update(event)
        return json.dumps(out, sort_keys=True, default=str)


def _event(level: int, kind: str, message: str, *args: object, **fields: object) -> None:
    log.log(level, message, *args, extra={"event": {"event": kind, **fields}})


class _Driver(Protocol):
    @property
    def current_round(self) -> int: ...
    @property
    def aggregator_stage(self) -> str: ...


def progress_logger(driver: _Driver) -> None:
    """An ``on_progress`` for :func:`securefl.runtime.run_server`: one line per stage change."""
    _event(
        logging.INFO,
        "stage",
        "round %d: stage %s",
        driver.current_round,
        driver.aggregator_stage,
        round=driver.current_round,
        stage=driver.aggregator_stage,
    )


class StatusBoard:
    """Thread-safe record of who was seen when, and how the rounds went."""

    def __init__(self, federation: str, sites: tuple[str, ...]) -> None:
        self.federation = federation
        self._sites = sites
        self._lock = threading.Lock()
        self._last_seen: dict[str, float] = {}
        self._round = 0
        self._stage = "waiting for sites"
        self._cohort: tuple[str, ...] = ()
        self._dropped: tuple[str, ...] = ()
        self._epsilon: dict[str, float] = {}
        self._last_aggregate: float | None = None

    def seen(self, site: str) -> None:
        with self._lock:
            self._last_seen[site] = time.time()

    def admitted(self, env: Envelope) -> None:
        _event(
            logging.INFO,
            "admission",
            "admitted %s from %s (round %d)",
            env.stage,
            env.sender,
            env.round,
            site=env.sender,
            stage=env.stage,
            round=env.round,
        )
        with self._lock:
            if env.stage == REPORT:
                metrics = _metrics(env.payload)
                if "epsilon" in metrics:
                    self._epsilon[env.sender] = metrics["epsilon"]
            # the stage shown comes from what the server sends (see ``sent``), never from a
            # site: a roster site could otherwise make the page say whatever it likes

    def refused(self, site: str | None, status: int, reason: str) -> None:
        _event(
            logging.WARNING,
            "refusal",
            "refused %s (%d): %s",
            site or "an unknown peer",
            status,
            reason,
            site=site,
            status=status,
            reason=reason,
        )

    def sent(self, env: Envelope) -> None:
        """Note what the driver sends: round starts, round results, the end."""
        with self._lock:
            if env.stage == ROUND_START and env.round != self._round:
                self._round, self._stage, self._cohort, self._dropped = env.round, "open", (), ()
                self._epsilon = {}
                _event(
                    logging.INFO,
                    "stage",
                    "round %d opened",
                    env.round,
                    round=env.round,
                    stage="open",
                )
            if env.stage == ROUND_START:
                self._cohort = (*self._cohort, env.receiver)
            elif env.stage == ROUND_END and self._stage != "closed":
                self._stage = "closed"
                try:  # the server's own message; decoded by the runtime's type
                    end = RoundEnd.from_bytes(env.payload)
                    survivors, status = end.survivors, end.status
                except WireError:
                    survivors, status = (), "?"
                self._dropped = tuple(s for s in self._cohort if s not in survivors)
                if status == "aggregated":
                    self._last_aggregate = time.time()
                for site in self._dropped:
                    _event(
                        logging.WARNING,
                        "dropout",
                        "round %d: %s dropped out",
                        env.round,
                        site,
                        round=env.round,
                        site=site,
                    )
                _event(
                    logging.INFO,
                    "round",
                    "round %d %s with %d of %d sites",
                    env.round,
                    status,
                    len(survivors),
                    len(self._cohort),
                    round=env.round,
                    status=status,
                    survivors=list(survivors),
                )
            elif env.stage == FINISH and self._stage != "finished":
                self._finish(env)
            elif env.round == self._round and self._stage not in _NOT_RUNNING:
                self._stage = env.stage  # a mode's own stage message of the open round

    def _finish(self, env: Envelope) -> None:
        self._stage = "finished"
        _event(
            logging.INFO,
            "stage",
            "federation finished after round %d",
            env.round,
            round=env.round,
            stage="finished",
        )

    def snapshot(self, *, connected_within: float = 60.0) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            return {
                "federation": self.federation,
                "round": self._round,
                "stage": self._stage,
                "sites": {
                    s: {
                        "connected": s in self._last_seen
                        and now - self._last_seen[s] <= connected_within,
                        "last_seen": _iso(self._last_seen.get(s)),
                        "epsilon": self._epsilon.get(s),
                    }
                    for s in self._sites
                },
                "dropped_this_round": list(self._dropped),
                "last_aggregate": _iso(self._last_aggregate),
            }


def _iso(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


def _metrics(payload: bytes) -> dict[str, float]:
    """A site's report metrics, or none when the report is malformed.

    :class:`Report` keeps only finite numbers (JSON has no NaN or infinity,
    and ``/status`` must answer whatever a site reports).
    """
    try:
        return Report.from_bytes(payload).metrics
    except WireError:
        return {}


def status_html(snapshot: dict[str, Any], *, refresh: int = 5) -> str:
    """A self-refreshing page of ``snapshot`` (every value escaped)."""
    e = html.escape

    def eps(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    rows = "".join(
        f"<tr><td>{e(name)}</td><td class='{'up' if s['connected'] else 'down'}'>"
        f"{'yes' if s['connected'] else 'no'}</td>"
        f"<td>{e(str(s['last_seen'] or '-'))}</td><td>{eps(s['epsilon'])}</td></tr>"
        for name, s in snapshot["sites"].items()
    )
    dropped = ", ".join(snapshot["dropped_this_round"]) or "none"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<meta http-equiv='refresh' content='{refresh}'>"
        f"<title>securefl: {e(snapshot['federation'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em 1em;"
        "border-bottom:1px solid #ccc;text-align:left}.up{color:#2e7d32;font-weight:bold}"
        ".down{color:#c62828;font-weight:bold}</style></head><body>"
        f"<h1>Federation {e(snapshot['federation'])}</h1>"
        f"<p>Round <b>{snapshot['round']}</b>, stage <b>{e(snapshot['stage'])}</b>. "
        f"Dropped this round: {e(dropped)}. "
        f"Last aggregate: {e(str(snapshot['last_aggregate'] or 'none yet'))}.</p>"
        "<table><tr><th>site</th><th>connected</th><th>last seen</th><th>ε reported</th></tr>"
        f"{rows}</table><p>Refreshes every {refresh} s.</p></body></html>"
    )
