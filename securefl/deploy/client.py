"""What ``securefl client`` runs at a hospital: the user's function or the built-in trainer.

Why a module and not the CLI: the two ways to train (``--train
MODULE:FUNCTION``, the hospital's own loop, and ``--data CSV --label COL``,
the trainer ``simulate`` uses) and the per-round progress are library logic
that the process-level tests and ``simulate --transport https`` run too.

Progress is read from the envelopes the site receives (round starts, round
ends, the federation's end), through :class:`ObservedTransport`, so it works
for any user loop without a hook in it.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from securefl.errors import ConfigError, DataError
from securefl.provision.kit import Kit
from securefl.runtime import messages as m
from securefl.transport.base import Transport
from securefl.transport.https_client import RetryPolicy
from securefl.wire import Envelope

if TYPE_CHECKING:
    import torch

    from securefl.runtime.site import Site

__all__ = [
    "ClientOutcome",
    "ObservedTransport",
    "RoundEvent",
    "check_options",
    "load_train_function",
    "run_client",
    "train_on_csv",
]


@dataclass(frozen=True)
class RoundEvent:
    """What the site just heard: ``kind`` is ``"start"``, ``"end"`` or ``"finish"``."""

    kind: str
    round: int
    status: str = ""
    survivors: int = 0
    cohort: int = 0
    reason: str = ""


class ObservedTransport(Transport):
    """A site transport that reports round starts, round ends and the end to ``observe``."""

    def __init__(self, inner: Transport, observe: Callable[[RoundEvent], None]) -> None:
        self.name = inner.name
        self.inner = inner
        self._observe = observe

    def send(self, envelope: Envelope) -> None:
        self.inner.send(envelope)

    def receive(self, timeout: float | None = None) -> Envelope | None:
        env = self.inner.receive(timeout)
        if env is not None:
            event = _event(env)
            if event is not None:
                self._observe(event)
        return env

    def close(self) -> None:
        self.inner.close()


def _event(env: Envelope) -> RoundEvent | None:
    """The progress an envelope shows; None for everything else (or what does not decode)."""
    try:
        if env.stage == m.ROUND_START:
            start = m.decode(env.payload, m.RoundStart)
            return RoundEvent("start", env.round, cohort=len(start.cohort))
        if env.stage == m.ROUND_END:
            end = m.decode(env.payload, m.RoundEnd)
            return RoundEvent(
                "end", env.round, status=end.status, survivors=len(end.survivors), reason=end.reason
            )
        if env.stage == m.FINISH:
            finish = m.decode(env.payload, m.Finish)
            return RoundEvent("finish", finish.rounds, reason=finish.reason)
    except Exception:
        return None
    return None


def load_train_function(spec: str) -> Callable[[Site], object]:
    """``MODULE:FUNCTION``, found in the installed packages or else the current directory.

    The directory goes last on ``sys.path``, not first as ``python -m`` puts
    it: the client imports torch, opacus and tenseal after the function, and
    a file dropped in the directory under one of their names must not run in
    the process that holds the site's keys. A module named like an installed
    one is therefore not found; rename it.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--train {spec!r}: give MODULE:FUNCTION, e.g. my_trainer:train")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--train {spec!r}: cannot import {module_name!r} ({exc})") from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise ConfigError(f"--train {spec!r}: {module_name} has no function {attr!r}")
    return function  # type: ignore[no-any-return]


def _labels(values: tuple[str, ...], classes: int, where: Path) -> npt.NDArray[np.int64]:
    """Class indices: integer labels in [0, classes) as they are, else the sorted label names.

    Integer labels are taken as given so that every site maps them alike even
    when one site's file lacks a class.
    """
    try:
        ints = [int(float(v)) for v in values]
        if all(float(v) == i for v, i in zip(values, ints, strict=True)) and all(
            0 <= i < classes for i in ints
        ):
            return np.asarray(ints, dtype=np.int64)
    except ValueError:
        pass
    names = sorted(set(values))
    if len(names) != classes:
        raise DataError(
            f"{where}: the label column has {len(names)} distinct values, the federation's "
            f"model has {classes} classes; use labels 0..{classes - 1}"
        )
    index = {n: i for i, n in enumerate(names)}
    return np.asarray([index[v] for v in values], dtype=np.int64)


def _kit_model(kit: Kit) -> torch.nn.Module:
    """The federation's model with the kit's initial weights (never a pickle: safetensors)."""
    from securefl.params import ParamSpec, load_vector_into
    from securefl.provision._model import _build

    model = _build(kit.federation.model)
    import torch

    assert isinstance(model, torch.nn.Module)
    if ParamSpec.from_state_dict(model.state_dict()) != kit.spec:
        raise ConfigError(f"kit {kit.path}: spec.json does not match the federation's [model]")
    load_vector_into(model, kit.initial_params(), kit.spec)
    return model


def train_on_csv(site: Site, kit: Kit, csv: Path, label: str) -> None:
    """The built-in trainer on this site's own CSV (what ``simulate`` runs per site)."""
    from securefl.data.csvsource import read_csv
    from securefl.data.federations import _split_site
    from securefl.data.preprocess import signed_log
    from securefl.simulation.trainer import run_distributed_site, run_site

    table = read_csv(csv, label=label)
    cfg = kit.federation
    if len(table.feature_names) != cfg.model.features and cfg.model.factory is None:
        raise DataError(
            f"{csv}: {len(table.feature_names)} feature columns, the federation's model "
            f"takes {cfg.model.features} (federation.toml [model] features)"
        )
    y = _labels(table.labels, cfg.model.classes, csv)
    data = _split_site(site.name, signed_log(table.features), y, cfg.model.seed)
    if site.distributed is not None:  # one Poisson batch, one clipped sum a round
        run_distributed_site(site, data, _kit_model(kit))
        return
    run_site(
        site,
        data,
        _kit_model(kit),
        batch_size=site.dp.batch_size,
        learning_rate=cfg.train.learning_rate,
        momentum=cfg.train.momentum,
        local_epochs=cfg.train.local_epochs,
    )


@dataclass(frozen=True)
class ClientOutcome:
    """How a site's run ended: the rounds it took part in, ε spent, the reason."""

    site: str
    rounds: int
    epsilon_spent: float
    epsilon_budget: float
    finished: bool
    reason: str


def check_options(train: object | None, data: Path | None, label: str | None) -> None:
    """Exactly one way to train: the user's function, or a CSV with its label column."""
    if (train is None) == (data is None):
        raise ConfigError("give either --train MODULE:FUNCTION or --data CSV --label COLUMN")
    if data is not None and not label:
        raise ConfigError("--data needs --label COLUMN (the outcome column of the CSV)")


def run_client(
    kit_path: str | Path,
    *,
    train: Callable[[Site], Any] | None = None,
    data: Path | None = None,
    label: str | None = None,
    server_url: str | None = None,
    retry: RetryPolicy | None = None,
    observe: Callable[[RoundEvent], None] | None = None,
) -> ClientOutcome:
    """Build the site from its kit and train until the federation ends.

    Exactly one of ``train`` (the user's function, called with the Site) or
    ``data`` with ``label`` (the built-in trainer). Errors are raised as they
    are (:class:`BudgetExhaustedError` when the budget would be passed,
    :class:`TransportError` when the server stays unreachable).
    """
    from securefl.deploy.site import site_from_kit, site_transport

    check_options(train, data, label)
    kit = Kit.load(kit_path)
    transport: Transport = site_transport(kit, server_url=server_url, retry=retry)
    if observe is not None:
        transport = ObservedTransport(transport, observe)
    site = site_from_kit(kit.path, transport=transport, retry=retry)
    try:
        if train is not None:
            train(site)
        else:
            assert data is not None and label is not None
            train_on_csv(site, kit, data, label)
    finally:
        transport.close()
    return ClientOutcome(
        site=site.name,
        rounds=len(site.history),
        epsilon_spent=site.ledger.spent(),
        epsilon_budget=site.dp.epsilon,
        finished=site.final_params is not None,
        reason=site.finish_reason,
    )
