"""``securefl simulate``: every party in one process, over the memory transport.

The server runs the same sans-IO driver as a real deployment; each site runs
in its own thread through the public Site API with the built-in trainer.
At the end each site learns what joining was worth: the accuracy of a model
it could have trained alone (same data, same DP budget) against the
federated model, on its own validation data.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from securefl.aggregation.base import AggregationMode
from securefl.aggregation.plain import PlainMode
from securefl.config import DPConfig, RoundConfig, StrategyConfig, TrainConfig
from securefl.data.federations import FederatedData, SiteData
from securefl.dp import make_private
from securefl.errors import BudgetExhaustedError, ConfigError, SecureFLError
from securefl.params import ParamSpec, model_vector, save_params
from securefl.reports import RecordWriter, Roster
from securefl.runtime.global_model import PlainGlobalModel
from securefl.runtime.loop import run_server
from securefl.runtime.server import ServerDriver
from securefl.runtime.site import Site
from securefl.simulation.trainer import accuracy, default_model, make_loader, train_one_epoch
from securefl.strategy.fedavg import make_strategy
from securefl.transport.memory import MemoryHub
from securefl.wire import SERVER

__all__ = ["SimulationResult", "SiteOutcome", "run_simulation"]

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class SiteOutcome:
    """What one hospital gets out of the simulation."""

    name: str
    num_examples: int
    epsilon: float
    epsilon_budget: float
    delta: float
    noise_multiplier: float
    local_only_accuracy: float
    federated_accuracy: float
    rounds_trained: int
    error: str = ""


@dataclass(kw_only=True)
class SimulationResult:
    secure: str
    rounds: int
    finish_reason: str
    global_accuracy: float
    sites: list[SiteOutcome]
    history: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The ``summary.json`` document."""
        return {
            "secure": self.secure,
            "rounds": self.rounds,
            "finish_reason": self.finish_reason,
            "global": {"accuracy": self.global_accuracy},
            "sites": [
                {"name": s.name, "num_examples": s.num_examples, "epsilon": s.epsilon,
                 "epsilon_budget": s.epsilon_budget, "delta": s.delta,
                 "noise_multiplier": s.noise_multiplier,
                 "local_only_accuracy": s.local_only_accuracy,
                 "federated_accuracy": s.federated_accuracy,
                 "rounds_trained": s.rounds_trained}
                for s in self.sites
            ],
            "history": self.history,
        }


def _local_only_accuracy(data: SiteData, num_classes: int, dp: DPConfig, train: TrainConfig,
                         rounds: int, noise_multiplier: float, seed: int) -> float:
    """The counterfactual: this site alone, same data, same σ and number of steps.

    It runs on the simulated site's own data and is never released, so it is
    not charged to the ledger; a real site doing this would pay for it.
    """
    torch.manual_seed(seed)
    model = default_model(data.x_train.shape[1], num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=train.learning_rate)
    loader = make_loader(data.x_train, data.y_train, dp.batch_size)
    private = make_private(model, optimizer, loader, noise_multiplier=noise_multiplier,
                           max_grad_norm=dp.max_grad_norm, secure_rng=dp.secure_rng)
    for _ in range(rounds * train.local_epochs):
        train_one_epoch(private.model, private.optimizer, private.loader)
    return accuracy(private.model, data.x_val, data.y_val)


def _make_mode(secure: str) -> AggregationMode:
    if secure == "plain":
        return PlainMode()
    raise ConfigError(f"secure mode {secure!r} is not available in this build")


def run_simulation(
    data: FederatedData,
    *,
    federation: str = "securefl-sim",
    secure: str = "plain",
    dp: DPConfig,
    train: TrainConfig,
    rounds: RoundConfig,
    strategy: StrategyConfig,
    seed: int = 0,
    out: Path | None = None,
    on_progress: Callable[[ServerDriver], None] | None = None,
    mode_factory: Callable[[str], AggregationMode] = _make_mode,
) -> SimulationResult:
    """Run a whole federation in this process and return what each party learned."""
    num_classes = len(data.classes)
    min_site = min(s.num_examples for s in data.sites)
    if dp.batch_size > min_site:
        raise ConfigError(f"dp.batch_size={dp.batch_size} exceeds the smallest site's "
                          f"{min_site} training examples")
    if rounds.min_sites > len(data.sites):
        raise ConfigError(f"rounds.min_sites={rounds.min_sites} but only {len(data.sites)} sites")
    torch.manual_seed(seed)
    initial = default_model(data.num_features, num_classes)
    spec = ParamSpec.from_state_dict(initial.state_dict())
    workdir = out if out is not None else Path(tempfile.mkdtemp(prefix="securefl-"))
    (workdir / "records").mkdir(parents=True, exist_ok=True)
    hub = MemoryHub()
    server_transport = hub.connect(SERVER)
    mode = mode_factory(secure)
    keys = {s.name: Ed25519PrivateKey.generate() for s in data.sites}
    Roster(federation=federation, sites={
        name: key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        for name, key in keys.items()}).save(workdir / "roster.json")
    sites: dict[str, Site] = {}
    models: dict[str, torch.nn.Module] = {}
    errors: dict[str, str] = {}
    for s in data.sites:
        sites[s.name] = Site(
            name=s.name, federation=federation, transport=hub.connect(s.name), mode=mode,
            dp=dp, train=train, rounds=rounds, state_dir=workdir / "state" / s.name,
            record_writer=RecordWriter(workdir / "records" / f"{s.name}.jsonl",
                                       federation=federation, site=s.name,
                                       signing_key=keys[s.name]),
        )
        model = default_model(data.num_features, num_classes)
        model.load_state_dict(initial.state_dict())
        models[s.name] = model

    def site_thread(site_data: SiteData) -> None:
        try:
            from securefl.simulation.trainer import run_site

            run_site(sites[site_data.name], site_data, models[site_data.name],
                     batch_size=dp.batch_size, learning_rate=train.learning_rate,
                     local_epochs=train.local_epochs)
        except BudgetExhaustedError as exc:
            errors[site_data.name] = str(exc)
        except SecureFLError as exc:
            errors[site_data.name] = str(exc)
            sites[site_data.name].leave(str(exc))
        except Exception as exc:  # report, never hang the server
            log.exception("site %s failed", site_data.name)
            errors[site_data.name] = f"{type(exc).__name__}: {exc}"
            sites[site_data.name].leave("internal error")

    driver = ServerDriver(
        federation=federation, mode=mode, strategy=make_strategy(strategy),
        model=PlainGlobalModel(model_vector(initial, spec)), spec=spec, rounds=rounds,
        max_weight=float(max(s.num_examples for s in data.sites)),
        expected_sites=tuple(s.name for s in data.sites),
    )
    threads = [threading.Thread(target=site_thread, args=(s,), name=s.name, daemon=True)
               for s in data.sites]
    for t in threads:
        t.start()
    run_server(driver, server_transport, stage_timeout=rounds.stage_timeout_seconds,
               on_progress=on_progress)
    for t in threads:
        t.join(timeout=rounds.stage_timeout_seconds)
    final = driver.model.plaintext()
    assert final is not None
    final_model = default_model(data.num_features, num_classes)
    from securefl.params import load_vector_into

    load_vector_into(final_model, final, spec)
    outcomes = []
    for s in data.sites:
        site = sites[s.name]
        sigma = site.noise_multiplier or 0.0
        local = (_local_only_accuracy(s, num_classes, dp, train, rounds.max_rounds, sigma, seed)
                 if sigma else float("nan"))
        outcomes.append(SiteOutcome(
            name=s.name, num_examples=s.num_examples, epsilon=site.ledger.spent(),
            epsilon_budget=dp.epsilon, delta=dp.delta, noise_multiplier=sigma,
            local_only_accuracy=local,
            federated_accuracy=accuracy(final_model, s.x_val, s.y_val),
            rounds_trained=len(site.history), error=errors.get(s.name, "")))
    if data.x_test is not None and data.y_test is not None:
        global_accuracy = accuracy(final_model, data.x_test, data.y_test)
    else:  # no held-out set: pooled accuracy over the sites' validation data
        correct = sum(o.federated_accuracy * len(s.y_val) for o, s in zip(outcomes, data.sites,
                                                                          strict=True))
        global_accuracy = correct / sum(len(s.y_val) for s in data.sites)
    result = SimulationResult(
        secure=secure, rounds=driver.current_round, finish_reason=driver.finish_reason,
        global_accuracy=global_accuracy, sites=outcomes,
        history=[{"round": h.round, "status": h.status, "survivors": list(h.survivors),
                  "metrics": h.metrics, "reason": h.reason} for h in driver.history])
    if out is not None:
        save_params(out / "global_model.safetensors", final, spec)
        (out / "summary.json").write_text(json.dumps(result.summary(), indent=2) + "\n",
                                          encoding="utf-8")
    return result


def parse_data_options(values: Sequence[str]) -> list[tuple[str, str]]:
    """``NAME=PATH.csv`` pairs from the command line."""
    pairs = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--data expects NAME=PATH.csv, got {value!r}")
        pairs.append((name, path))
    return pairs
