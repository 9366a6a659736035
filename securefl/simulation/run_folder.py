"""A simulation's run folder (``simulate --out DIR``): what it holds and who may read it.

A run folder holds the audit set (``records/``, ``roster.json``,
``server_log.jsonl``), the sites' state (``state/``: privacy ledgers, mask
round logs), ``summary.json``, the model, and ``keys/``: what continuing
the run needs and nothing else has: each site's Ed25519 identity key (its
records are signed with it and chain on only under the same key), the
server's (it signs the round log), and in ``he`` mode the keymaker's signed
secret context (every site decrypts with it). ``keys/`` and ``state/`` are
owner-only (0700), every key file 0600, whatever the umask: the identity
keys sign privacy records, and the secret context decrypts every aggregate.

It also holds ``server_state/``: the server's journal of completed rounds,
the model and strategy state after the last one, and in ``he`` mode the
encrypted history (:class:`securefl.runtime.ServerState`), written as each
round closes. With the sites' ledgers and records and ``keys/`` that is
everything ``simulate --resume`` needs to continue an interrupted run from
its last completed round.

An earlier run in the folder is never overwritten: its ledgers already
charged the rounds it ran, so :func:`check_run_folder` stops a new run
before anything is read or trained, in one line that says how to continue
an interrupted one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from securefl.errors import ConfigError
from securefl.params import ParamSpec, save_params
from securefl.provision.pki import load_private_key, write_private_key
from securefl.reports.server_log import (
    SERVER_LOG_NAME,
    ServerLogWriter,
    append_new_rounds,
    dp_policy,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from securefl.config import DPConfig, RoundConfig, TrainConfig
    from securefl.hazmat.sign import SigningKey
    from securefl.runtime.server import ServerDriver

__all__ = [
    "KEYS_DIR",
    "SERVER_STATE_DIR",
    "ServedFederation",
    "check_run_folder",
    "earlier_run",
    "identity_keys",
    "private_dir",
    "read_private",
    "refuse_earlier_run",
    "write_outputs",
    "write_private",
    "write_server_log",
]

KEYS_DIR = "keys"
#: the server's journal, checkpoints and (he) keys: what ``--resume`` continues from
SERVER_STATE_DIR = "server_state"
#: what a run writes into its folder; any of them means the folder holds a run
_RUN_FILES = (
    "summary.json", "server_log.jsonl", "roster.json", "records", "state", KEYS_DIR,
    SERVER_STATE_DIR,
)  # fmt: skip


def earlier_run(out: Path) -> str | None:
    """What earlier run ``out`` holds, in words, or ``None`` when it holds none."""
    state = _run_state(out)
    if state is None:
        return None
    ended, done = state
    if done is None:
        return "an interrupted simulation"
    kind = "a finished" if ended else "an interrupted"
    return f"{kind} simulation ({done} round(s) completed)"


def _run_state(out: Path) -> tuple[bool, int | None] | None:
    """``(ended, rounds completed)`` of the run in ``out``; ``None`` when it holds none.

    A folder with run files but no readable summary was stopped before it
    could write one (or by a kill): it did not end.
    """
    if not any((out / name).exists() for name in _RUN_FILES):
        return None
    try:
        summary: dict[str, Any] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, None
    return not summary.get("interrupted"), summary.get("rounds_completed")


def check_run_folder(out: Path, *, resume: bool) -> None:
    """Refuse, in one line, an ``--out`` that does not fit ``--resume`` (or its absence).

    Without ``resume`` the folder must hold no run: its ledgers already
    charged the rounds it ran. With ``resume`` it must hold an interrupted
    run that kept its server state (the journal of completed rounds).
    """
    state = _run_state(out)
    found = earlier_run(out)
    if not resume:
        if state is None:
            return
        how = (
            "pick a new --out (the earlier run stays as it is)"
            if state[0]
            else "continue it with --resume (the same options), or pick a new --out"
        )
        raise ConfigError(
            f"--out {out} already holds {found}, whose privacy spend is recorded there; {how}"
        )
    if state is None:
        raise ConfigError(f"--resume: {out} holds no simulation to continue; leave out --resume")
    if state[0]:
        raise ConfigError(
            f"--resume: {out} holds {found}: nothing to continue; pick a new --out for a new run"
        )
    if not (out / SERVER_STATE_DIR).is_dir():
        raise ConfigError(
            f"--resume: {out} holds {found} without a server state folder "
            f"({SERVER_STATE_DIR}/), so its rounds cannot be continued; pick a new --out"
        )


def refuse_earlier_run(out: Path) -> None:
    """Raise one clear line when ``out`` already holds a run (its ledgers charged its rounds)."""
    check_run_folder(out, resume=False)


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner may enter (0700), made if missing."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # an existing folder, or a umask that narrowed the mode
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file only its owner may read (0600 from creation on)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(data)


def read_private(path: Path) -> bytes | None:
    """The bytes of a key file, or ``None`` when there is none yet."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def identity_keys(folder: Path, names: Iterable[str]) -> dict[str, Ed25519PrivateKey]:
    """Each party's Ed25519 identity key from ``folder/NAME.identity.pem``; made if missing."""
    keys = private_dir(folder)
    out: dict[str, Ed25519PrivateKey] = {}
    for name in names:
        path = keys / f"{name}.identity.pem"
        if path.exists():
            key = load_private_key(path)
            if not isinstance(key, Ed25519PrivateKey):
                raise ConfigError(f"{path} is not an Ed25519 identity key")
        else:
            key = Ed25519PrivateKey.generate()
            write_private_key(path, key)
        out[name] = key
    return out


def write_outputs(
    out: Path,
    summary: dict[str, Any],
    model: npt.NDArray[np.float32] | None,
    spec: ParamSpec,
) -> None:
    """``summary.json`` and, once a round completed, the model (safetensors)."""
    if model is not None:
        save_params(out / "global_model.safetensors", model, spec)
    (out / "summary.json").write_text(
        json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )


class ServedFederation(Protocol):
    """What the round log is written from: a simulated federation's server and settings.

    :class:`~securefl.simulation.federation.LocalFederation` and the Ray
    backend's run (:mod:`securefl.simulation.ray_backend`) both are one.
    """

    @property
    def driver(self) -> ServerDriver: ...
    @property
    def workdir(self) -> Path: ...
    @property
    def federation(self) -> str: ...
    @property
    def server_key(self) -> SigningKey: ...
    @property
    def dp(self) -> DPConfig: ...
    @property
    def train(self) -> TrainConfig: ...
    @property
    def rounds(self) -> RoundConfig: ...


def write_server_log(fed: ServedFederation, *, closed: bool) -> None:
    """The server's signed round log, next to the records and the roster.

    ``closed``: sign the closing line (the run ended); a run that was stopped
    leaves its log open, as a server's log is while its federation runs.
    """
    driver = fed.driver
    writer = ServerLogWriter(
        fed.workdir / SERVER_LOG_NAME,
        federation=fed.federation,
        signing_key=fed.server_key,
        run=driver.run_id,
    )
    policy = dp_policy(
        epsilon=fed.dp.epsilon,
        delta=fed.dp.delta,
        accountant=fed.dp.accountant,
        local_epochs=fed.train.local_epochs,
        max_grad_norm=fed.dp.max_grad_norm,
        batch_size=fed.dp.batch_size,  # the built-in trainer's loaders use it
        noise_multiplier=fed.dp.noise_multiplier,  # None: each site calibrates its own
        max_rounds=fed.rounds.max_rounds,
    )
    # a resumed run's log already holds the rounds before the interruption: go on from there
    append_new_rounds(writer, driver.history, dp=policy)
    if not closed:
        return
    # the closing line: no round after these ran (an audit fails a log without it)
    writer.close(
        reason=driver.halted or driver.finish_reason or "the run ended",
        max_weight=driver.max_weight,
        min_sites=fed.rounds.min_sites,
        dp=policy,
    )
