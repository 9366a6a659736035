"""A server's state folder: everything a killed server needs to carry on.

Why: a federation runs for hours; the server's machine reboots. Without this
folder a restarted server would start again at round 1, which every site's
ledger and round log refuse, and forget the model. With it, ``securefl
server`` started again on the same folder resumes after the last completed
round. The folder holds:

- ``journal.jsonl`` (:class:`~securefl.runtime.journal.Journal`): the run
  (federation, run id, mode, model spec), each round id *before* its round
  opens (the high-water mark: no id is ever used twice, across restarts
  included), each closed round (its summary, the patience state, what each
  site acknowledged, and the SHA-256 of its checkpoint), and the he keys;
- ``checkpoints/round-NNNNNN.safetensors``: after an aggregated round, the
  global model and the strategy's state (``plain``, ``mask``; only the
  newest is kept), or that round's encrypted aggregate (``he``, where the
  aggregates *are* the model, so all are kept), each written by atomic
  replace before the journal names it;
- ``he_keys.bin``: the keymaker's signed public context and sealed bundles
  (public material), so a restarted server needs no new keys;
- ``server.lock``: held (an OS file lock) while a server uses the folder, so
  a second ``securefl server`` on the same kit is refused instead of
  interleaving its rounds into the same journal.

A round that was open when the server died is journalled as abandoned
("server restarted") and the next round opens with the next id and fresh
round keys. A checkpoint whose bytes do not match the journal's hash is
refused, never loaded. The driver stays sans-IO: it only calls the
:class:`~securefl.runtime._rounds.RoundJournal` methods this class implements.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from filelock import FileLock, Timeout
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from securefl.errors import ConfigError, IntegrityError
from securefl.params import ParamSpec
from securefl.reports._canonical import canonical_bytes
from securefl.runtime._rounds import Patience, RoundSummary
from securefl.runtime.encrypted_model import EncryptedAggregatesModel
from securefl.runtime.global_model import PlainGlobalModel
from securefl.runtime.journal import Journal, sha256_hex, write_atomic
from securefl.runtime.server import ServerDriver, ServerStage
from securefl.wire import Envelope

__all__ = ["CHECKPOINTS", "JOURNAL_NAME", "KEYS_NAME", "LOCK_NAME", "RESTARTED", "ServerState"]

log = logging.getLogger(__name__)

JOURNAL_NAME = "journal.jsonl"
CHECKPOINTS = "checkpoints"
KEYS_NAME = "he_keys.bin"
LOCK_NAME = "server.lock"
STATE_VERSION = 1
#: The reason journalled for the round a restart abandons.
RESTARTED = "server restarted"
_CHECKPOINT = re.compile(r"round-(\d{6,})\.safetensors")


def _spec_hash(spec: ParamSpec) -> str:
    return sha256_hex(canonical_bytes(spec.to_dict()))


def _summary_json(summary: RoundSummary) -> dict[str, Any]:
    out = asdict(summary)
    # a site may report NaN; the journal's canonical JSON refuses it, and the
    # patience rule never sees a non-finite value as an improvement anyway
    out["metrics"] = {k: v for k, v in summary.metrics.items() if math.isfinite(v)}
    return out


def _summary(data: dict[str, Any]) -> RoundSummary:
    fields = dict(data)
    for key in ("cohort", "survivors", "submitted"):
        fields[key] = tuple(fields[key])
    return RoundSummary(**fields)


def _lock_folder(folder: Path) -> FileLock:
    """Hold ``folder``'s lock for as long as the returned object lives.

    Two server processes on one folder would both append to one journal and
    reuse each other's round ids. The lock is per process (re-entrant inside
    it, so a driver restarted in the same process, as the tests and
    ``simulate --resume`` do, takes it again) and the OS drops it when the
    process dies, so a killed server never leaves a stale lock behind.
    """
    lock = FileLock(folder / LOCK_NAME, timeout=0, thread_local=False, is_singleton=True)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(
            f"{folder}: another server process is using this state folder; stop it first "
            "(two servers on one folder would interleave their rounds)"
        ) from None
    return lock


class ServerState:
    """Open (or create) a server state folder for one federation and model.

    Refuses with :class:`ConfigError` a folder of another federation, mode or
    model spec, and with :class:`IntegrityError` a damaged journal or
    checkpoint. :attr:`run_id` is the run's id for the folder's whole life.
    """

    def __init__(self, folder: Path, *, federation: str, mode: str, spec: ParamSpec) -> None:
        self.folder = Path(folder)
        (self.folder / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        self._lock = _lock_folder(self.folder)
        self._journal = Journal(self.folder / JOURNAL_NAME)
        self._driver: ServerDriver | None = None
        #: closed rounds not yet durable (the disk refused); written before the next round opens
        self._pending: list[tuple[dict[str, Any], bytes | None]] = []
        header = {
            "kind": "run",
            "version": STATE_VERSION,
            "federation": federation,
            "mode": mode,
            "spec": _spec_hash(spec),
        }
        if not self._journal.entries:
            self._journal.append({**header, "run": secrets.token_hex(16)})
        first = self._journal.entries[0]
        for key, want in header.items():
            if first.get(key) != want:
                raise ConfigError(
                    f"{self.folder}: this state folder holds {key} {first.get(key)!r}, but the "
                    f"kit says {want!r}; use a new state folder for another federation or model"
                )
        self.run_id: str = first["run"]

    @property
    def journal(self) -> Journal:
        return self._journal

    # -- restart --------------------------------------------------------------

    def attach(self, driver: ServerDriver) -> None:
        """Give ``driver`` the run so far and become its journal.

        Call on a driver that has not run: it takes the run id, the he keys,
        the model and strategy state of the last aggregated round, the history
        and the patience state; a round left open by a crash is journalled as
        abandoned, and the next round id is one past every id ever opened.
        """
        if driver.federation != self._journal.entries[0]["federation"]:
            raise ConfigError("the driver runs another federation than this state folder")
        driver.run_id = self.run_id
        entries = self._journal.entries[1:]
        for entry in entries:
            if entry["kind"] == "keys":
                self._replay_keys(driver, entry)
        openings = [e for e in entries if e["kind"] == "opening"]
        rounds = [e for e in entries if e["kind"] == "round"]
        high = max((e["round"] for e in openings), default=0)
        if openings and (not rounds or rounds[-1]["round"] < high):
            rounds.append(self._abandon(driver, openings[-1], rounds))
        history = [_summary(e["summary"]) for e in rounds]
        last = rounds[-1] if rounds else None
        patience = Patience(**last["patience"]) if last else Patience()
        self._restore_model(driver, rounds)
        driver.resume(
            last_round=high,
            history=history,
            patience=patience,
            finished=last["finished"] if last else "",
        )
        self._driver = driver
        driver.journal = self
        if rounds:
            log.info("resuming run %s after round %d", self.run_id, high)

    def _replay_keys(self, driver: ServerDriver, entry: dict[str, Any]) -> None:
        raw = self._read_checked(self.folder / KEYS_NAME, entry["sha256"])
        if driver.keys is None:
            raise ConfigError("the state folder holds he keys, but the driver has no key step")
        env = Envelope(
            federation=driver.federation,
            round=0,
            stage=entry["stage"],
            sender=entry["sender"],
            receiver=entry["receiver"],
            payload=raw,
        )
        driver.handle(env)  # checked again under the roster, as when it first arrived
        if driver.mode is None:
            raise IntegrityError(f"{self.folder / KEYS_NAME}: the saved he keys do not build")

    def _abandon(
        self, driver: ServerDriver, opening: dict[str, Any], rounds: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Journal the round a crash left open as abandoned; the patience rule sees it end."""
        prior = rounds[-1] if rounds else None
        patience = Patience(**prior["patience"]) if prior else Patience()
        summary = RoundSummary(
            round=opening["round"],
            cohort=tuple(opening["cohort"]),
            status="abandoned",
            reason=RESTARTED,
            **opening["announced"],
        )
        stop = patience.stop_reason(
            {}, monitor=driver.monitor, rounds=driver.rounds, round_number=summary.round
        )
        log.warning("round %d was open when the server stopped: abandoned", summary.round)
        entry = self._round_entry(summary, patience, stop, checkpoint=None, acked=None)
        self._journal.append(entry)
        return entry

    def _restore_model(self, driver: ServerDriver, rounds: list[dict[str, Any]]) -> None:
        aggregated = [e for e in rounds if e["summary"]["status"] == "aggregated"]
        if isinstance(driver.model, EncryptedAggregatesModel):
            history = []
            for e in aggregated:
                tensors = self._load_checkpoint(e)
                history.append((tensors["aggregate"].tobytes(), e["summary"]["total_weight"]))
            acks = [e["acked"] for e in rounds if e["acked"] is not None]
            acked = acks[-1] if acks else {}
            driver.model.restore(history, {k: int(v) for k, v in acked.items()})
            self._prune(keep={e["checkpoint"]["file"] for e in aggregated})
            return
        if not aggregated:
            self._prune(keep=set())
            return
        tensors = self._load_checkpoint(aggregated[-1])
        params = tensors.pop("params")
        if params.shape != (driver.spec.size,):
            raise IntegrityError("the checkpoint's model does not fit the federation's spec")
        driver.model = PlainGlobalModel(params)
        prefix = "strategy/"
        driver.strategy.load_state(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        )
        self._prune(keep={aggregated[-1]["checkpoint"]["file"]})

    def _load_checkpoint(self, entry: dict[str, Any]) -> dict[str, npt.NDArray[Any]]:
        ref = entry["checkpoint"]
        raw = self._read_checked(self.folder / CHECKPOINTS / ref["file"], ref["sha256"])
        return dict(st_load(raw))

    def _read_checked(self, path: Path, sha256: str) -> bytes:
        """The file's bytes, only if they are the ones the journal recorded."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(
                f"{path} is missing; restore the state folder from a backup"
            ) from None
        if sha256_hex(raw) != sha256:
            raise IntegrityError(
                f"{path} does not match the hash the journal recorded for it (damaged or "
                "replaced); refusing to load it. Restore the state folder from a backup"
            )
        return raw

    def _prune(self, keep: set[str]) -> None:
        """Delete checkpoints no journal entry needs (older models; files a crash orphaned)."""
        for path in (self.folder / CHECKPOINTS).iterdir():
            if _CHECKPOINT.fullmatch(path.name) and path.name not in keep:
                path.unlink()

    # -- RoundJournal ---------------------------------------------------------

    def opening(self, round_id: int, cohort: tuple[str, ...], announced: dict[str, Any]) -> None:
        """Make the round id durable (and any closed round still pending) before it opens."""
        self._flush()
        self._journal.append(
            {"kind": "opening", "round": round_id, "cohort": list(cohort), "announced": announced}
        )

    def closed(self, summary: RoundSummary) -> None:
        """Checkpoint and journal a closed round; if the disk refuses, retry at the next opening."""
        driver = self._driver
        assert driver is not None, "attach the state folder to its driver first"
        blob: bytes | None = None
        checkpoint = None
        model = driver.model
        acked = model.acknowledged() if isinstance(model, EncryptedAggregatesModel) else None
        if summary.status == "aggregated":
            blob = self._checkpoint_bytes(driver)
            name = f"round-{summary.round:06d}.safetensors"
            checkpoint = {"file": name, "sha256": sha256_hex(blob)}
        entry = self._round_entry(
            summary,
            driver.patience,
            driver.finish_reason if driver.stage is ServerStage.FINISHED else "",
            checkpoint=checkpoint,
            acked=acked,
        )
        self._pending.append((entry, blob))
        try:
            self._flush()
        except OSError as exc:
            log.error(
                "round %d could not be saved (%s); no round opens until it is", summary.round, exc
            )

    def keys(self, envelope: Envelope) -> None:
        """Keep the keymaker's keys (public material) so a restart needs none from the sites."""
        try:
            write_atomic(self.folder / KEYS_NAME, envelope.payload)
            self._journal.append(
                {
                    "kind": "keys",
                    "stage": envelope.stage,
                    "sender": envelope.sender,
                    "receiver": envelope.receiver,
                    "sha256": sha256_hex(envelope.payload),
                }
            )
        except OSError as exc:  # the run goes on; a restart would need the keys again
            log.error("the he keys could not be saved (%s)", exc)

    # -- writing --------------------------------------------------------------

    def _flush(self) -> None:
        while self._pending:
            entry, blob = self._pending[0]
            if blob is not None:  # the file first: the journal names only what is on disk
                write_atomic(self.folder / CHECKPOINTS / entry["checkpoint"]["file"], blob)
            self._journal.append(entry)
            self._pending.pop(0)
            if blob is not None and self._driver is not None:
                if not isinstance(self._driver.model, EncryptedAggregatesModel):
                    self._prune(keep={entry["checkpoint"]["file"]})

    @staticmethod
    def _checkpoint_bytes(driver: ServerDriver) -> bytes:
        model = driver.model
        if isinstance(model, EncryptedAggregatesModel):
            encrypted_sum, _ = model.aggregates[-1]
            return st_save({"aggregate": np.frombuffer(encrypted_sum, dtype=np.uint8).copy()})
        params = model.plaintext()
        assert params is not None
        tensors: dict[str, npt.NDArray[Any]] = {"params": params}
        for key, value in driver.strategy.state_dict().items():
            tensors[f"strategy/{key}"] = value
        return st_save(tensors)

    @staticmethod
    def _round_entry(
        summary: RoundSummary,
        patience: Patience,
        finished: str,
        *,
        checkpoint: dict[str, Any] | None,
        acked: dict[str, int] | None,
    ) -> dict[str, Any]:
        return {
            "kind": "round",
            "round": summary.round,
            "summary": _summary_json(summary),
            "patience": {"best": patience.best, "stale": patience.stale},
            "finished": finished,
            "checkpoint": checkpoint,
            "acked": acked,
        }
