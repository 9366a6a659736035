"""``securefl simulate``: every party in one process, over the memory transport.

The server runs the same sans-IO driver as a real deployment; each site runs
in its own thread through the public Site API with the built-in trainer.
At the end each site learns what joining was worth: the accuracy of a model
it could have trained alone (same data, same DP budget) against the
federated model, on its own validation data.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from securefl.config import (
    DPConfig,
    FederationConfig,
    TrainConfig,
    check_site_names,
)
from securefl.data.federations import FederatedData, SiteData
from securefl.dp import check_delta, make_private
from securefl.errors import ConfigError
from securefl.params import load_vector_into, model_vector
from securefl.runtime.server import ServerDriver
from securefl.runtime.site import Site
from securefl.simulation.federation import LocalFederation
from securefl.simulation.modes import check_dropouts
from securefl.simulation.noise_plan import site_noise_multipliers
from securefl.simulation.run_folder import write_outputs, write_server_log
from securefl.simulation.trainer import (
    accuracy,
    default_model,
    make_loader,
    run_distributed_site,
    run_site,
    train_one_epoch,
)

__all__ = [
    "SimulationResult",
    "SiteOutcome",
    "history_rows",
    "preflight",
    "run_simulation",
    "simulation_result",
]

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
    #: the local-only model on the held-out test set (NaN without one)
    local_only_test_accuracy: float = float("nan")
    error: str = ""


@dataclass(kw_only=True)
class SimulationResult:
    """What a simulation produced.

    ``rounds`` counts the rounds opened, ``rounds_completed`` those whose
    aggregate reached the model; with none completed there is no federated
    model and every federated accuracy is NaN (``null`` in ``summary.json``).
    ``halted`` says why the run ended before its plan ("" if it did not).
    """

    secure: str
    rounds: int
    finish_reason: str
    global_accuracy: float
    sites: list[SiteOutcome]
    history: list[dict[str, Any]] = field(default_factory=list)
    rounds_completed: int = 0
    halted: str = ""
    interrupted: str = ""
    """Why the run stopped before it ended (Ctrl-C, an error); "" when it ended."""
    privacy: str = "local"
    """The privacy model: ``local`` DP-SGD, or ``distributed`` (Skellam shares)."""
    data: str = ""
    """What the sites' records are (bundled, generated or own files)."""

    @property
    def trained(self) -> bool:
        """Whether any round's aggregate reached the model."""
        return self.rounds_completed > 0

    def summary(self) -> dict[str, Any]:
        """The ``summary.json`` document."""
        return {
            "secure": self.secure,
            "rounds": self.rounds,
            "rounds_completed": self.rounds_completed,
            "finish_reason": self.finish_reason,
            "halted": self.halted or None,
            "interrupted": self.interrupted or None,
            "privacy": self.privacy,
            "data": self.data or None,
            "global": {"accuracy": _finite_or_none(self.global_accuracy)},
            "sites": [
                {
                    "name": s.name,
                    "num_examples": s.num_examples,
                    "epsilon": s.epsilon,
                    "epsilon_budget": s.epsilon_budget,
                    "delta": s.delta,
                    "noise_multiplier": s.noise_multiplier,
                    "local_only_accuracy": _finite_or_none(s.local_only_accuracy),
                    "federated_accuracy": _finite_or_none(s.federated_accuracy),
                    "local_only_test_accuracy": _finite_or_none(s.local_only_test_accuracy),
                    "rounds_trained": s.rounds_trained,
                }
                for s in self.sites
            ],
            "history": self.history,
        }


def _seeded_model(num_features: int, num_classes: int, seed: int) -> torch.nn.Module:
    """The initial weights, reproducible from ``seed``.

    Not a security use: initial weights are public. The seed is applied inside
    ``fork_rng`` so torch's global generator is left as it was; DP noise and
    Poisson sampling never come from it (``securefl.dp`` seeds its own from
    ``os.urandom``).
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return default_model(num_features, num_classes)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _local_only_model(
    data: SiteData,
    num_classes: int,
    dp: DPConfig,
    train: TrainConfig,
    rounds: int,
    noise_multiplier: float,
    seed: int,
) -> torch.nn.Module:
    """The counterfactual: this site alone, same data, same σ and number of rounds.

    It runs on the simulated site's own data and is never released, so it is
    not charged to the ledger; a real site doing this would pay for it.
    """
    model = _seeded_model(data.x_train.shape[1], num_classes, seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=train.learning_rate, momentum=train.momentum)
    loader = make_loader(data.x_train, data.y_train, dp.batch_size)
    private = make_private(
        model,
        optimizer,
        loader,
        noise_multiplier=noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        secure_rng=dp.secure_rng,
    )
    for _ in range(rounds * train.local_epochs):
        train_one_epoch(private.model, private.optimizer, private.loader)
    return private.model


def preflight(data: FederatedData, config: FederationConfig, dropouts: Mapping[str, str]) -> None:
    """Refuse, before anything is trained, a federation its sites or its mode cannot run.

    Every backend (in-process, Ray) runs these same checks first.
    """
    dp = config.dp
    smallest = min(data.sites, key=lambda s: s.num_examples)
    if config.privacy == "local" and dp.batch_size > smallest.num_examples:
        raise ConfigError(
            f"dp.batch_size={dp.batch_size} exceeds the smallest site's "
            f"{smallest.num_examples} training examples"
        )
    for site_data in data.sites:  # each site checks again in privatize; say it once, here
        check_delta(
            dp.delta,
            num_examples=site_data.num_examples,
            name=f"dp.delta of site {site_data.name!r}",
        )
    check_dropouts(
        config.secure,
        [s.name for s in data.sites],
        dropouts,
        config.rounds.min_sites,
        mask=config.mask,
    )


def history_rows(driver: ServerDriver) -> list[dict[str, Any]]:
    """The driver's round summaries as ``summary.json`` lists them."""
    return [
        {
            "round": h.round,
            "status": h.status,
            "survivors": list(h.survivors),
            "num_survivors": len(h.survivors),
            "metrics": h.metrics,
            "reason": h.reason,
        }
        for h in driver.history
    ]


def run_simulation(
    data: FederatedData,
    config: FederationConfig,
    *,
    seed: int = 0,
    out: Path | None = None,
    on_progress: Callable[[ServerDriver], None] | None = None,
    dropouts: dict[str, str] | None = None,
) -> SimulationResult:
    """Run a whole federation in this process and return what each party learned.

    ``config`` is the federation's settings, as a federation file holds them
    (``securefl simulate`` builds it from its options and ``--config``): its
    ``secure``, ``dp``, ``train``, ``rounds``, ``strategy``, ``mask`` and
    ``he`` tables are used as a deployment uses them. The sites come from
    ``data`` (``config.sites`` is not read) and the model is the built-in
    one, seeded by ``seed``.
    """
    dp, train, rounds = config.dp, config.train, config.rounds
    num_classes = len(data.classes)
    preflight(data, config, dropouts or {})
    initial = _seeded_model(data.num_features, num_classes, seed)
    fed = LocalFederation(
        site_names=[s.name for s in data.sites],
        initial_model=initial,
        dp=dp,
        train=train,
        rounds=rounds,
        strategy=config.strategy,
        federation=config.name,
        secure=config.secure,
        workdir=out,
        max_weight=rounds.max_weight or float(max(s.num_examples for s in data.sites)),
        dropouts=dropouts,
        he_preset=config.he.preset,
        he_keymaker=config.he.keymaker,
        mask=config.mask,
        privacy=config.privacy,
        distributed=config.distributed,
    )
    by_name = {s.name: s for s in data.sites}

    noise = site_noise_multipliers(data, config)

    def train_site(site: Site) -> None:
        model = default_model(data.num_features, num_classes)
        model.load_state_dict(initial.state_dict())
        if site.name in noise:  # many unequal sites: σ calibrated for all at once
            site.dp = dataclasses.replace(site.dp, noise_multiplier=noise[site.name])
        if fed.distributed is not None:  # one DP-SGD step a round on one Poisson batch
            run_distributed_site(site, by_name[site.name], model)
            return
        run_site(
            site,
            by_name[site.name],
            model,
            batch_size=dp.batch_size,
            learning_rate=train.learning_rate,
            momentum=train.momentum,
            local_epochs=train.local_epochs,
        )

    try:
        run = fed.run(train_site, on_progress=on_progress)
    except BaseException as exc:
        # Ctrl-C or an error: keep what was completed. The round log stays open (no
        # closing line): the run did not end, and an audit says so (--still-running warns)
        write_server_log(fed, closed=False)
        if out is not None:
            why = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else repr(exc)
            try:
                model = _model_so_far(fed, data, num_classes)
                partial = _result(fed, data, config, model, fed.endings, interrupted=why)
                vector = model_vector(model, fed.spec) if model else None
                write_outputs(out, partial.summary(), vector, fed.spec)
            except Exception as failed:  # the first error is the one to report
                exc.add_note(f"what completed could not be written to {out}: {failed!r}")
        raise
    write_server_log(fed, closed=True)
    final_model = _model_so_far(fed, data, num_classes)
    test = (data.x_test, data.y_test) if data.x_test is not None else None
    outcomes = [
        _outcome(fed, run.endings, s, final_model, test, num_classes, seed) for s in data.sites
    ]
    result = _result(fed, data, config, final_model, run.endings, outcomes=outcomes)
    if out is not None:
        write_outputs(
            out,
            result.summary(),
            model_vector(final_model, fed.spec) if final_model else None,
            fed.spec,
        )
    fed.close()  # without ``out``: the temporary records and ledgers go
    return result


def _model_so_far(
    fed: LocalFederation, data: FederatedData, num_classes: int
) -> torch.nn.Module | None:
    """The federation's model after the rounds completed so far; ``None`` before any.

    An untrained model is never reported as the federation's. In he mode the
    server cannot read the model: it is the one every site decrypted at the
    end, so an he run stopped before its end has none to report.
    """
    driver = fed.driver
    if driver.completed_rounds == 0:
        return None
    final = driver.model.plaintext()
    if final is None:
        final = next(
            (s.final_params for s in fed.sites.values() if s.final_params is not None), None
        )
    if final is None:
        return None
    model = default_model(data.num_features, num_classes)
    load_vector_into(model, final, fed.spec)
    return model


def _result(
    fed: LocalFederation,
    data: FederatedData,
    config: FederationConfig,
    model: torch.nn.Module | None,
    endings: Mapping[str, str],
    *,
    outcomes: list[SiteOutcome] | None = None,
    interrupted: str = "",
) -> SimulationResult:
    """What the run produced; without ``outcomes`` (a stopped run) no counterfactual is trained."""
    if outcomes is None:
        outcomes = [_spent_so_far(fed, endings, s, model) for s in data.sites]
    return simulation_result(fed.driver, data, config, model, outcomes, interrupted=interrupted)


def simulation_result(
    driver: ServerDriver,
    data: FederatedData,
    config: FederationConfig,
    model: torch.nn.Module | None,
    outcomes: list[SiteOutcome],
    *,
    interrupted: str = "",
) -> SimulationResult:
    """The result every backend reports: the rounds, the sites' outcomes, the model's test."""
    return SimulationResult(
        secure=config.secure,
        privacy=config.privacy,
        rounds=driver.current_round,
        rounds_completed=driver.completed_rounds,
        finish_reason=driver.finish_reason,
        halted=driver.halted,
        interrupted=interrupted,
        data=data.source,
        global_accuracy=_global_accuracy(data, model, outcomes) if model else float("nan"),
        sites=outcomes,
        history=history_rows(driver),
    )


def _outcome(
    fed: LocalFederation,
    endings: Mapping[str, str],
    data: SiteData,
    final_model: torch.nn.Module | None,
    test: tuple[Any, Any] | None,
    num_classes: int,
    seed: int,
) -> SiteOutcome:
    site = fed.sites[data.name]
    sigma = site.noise_multiplier or 0.0
    rounds = len(site.history)
    nan = float("nan")
    local_val = local_test = nan
    if sigma and rounds and fed.distributed is None:  # distributed: σ is the sum's, not a site's
        local = _local_only_model(data, num_classes, fed.dp, fed.train, rounds, sigma, seed)
        local_val = accuracy(local, data.x_val, data.y_val)
        local_test = accuracy(local, *test) if test is not None else nan
    return SiteOutcome(
        name=data.name,
        num_examples=data.num_examples,
        epsilon=site.ledger.spent(),
        epsilon_budget=fed.dp.epsilon,
        delta=fed.dp.delta,
        noise_multiplier=sigma,
        local_only_accuracy=local_val,
        federated_accuracy=(
            accuracy(final_model, data.x_val, data.y_val) if final_model else float("nan")
        ),
        local_only_test_accuracy=local_test,
        rounds_trained=rounds,
        error=endings.get(data.name, ""),
    )


def _spent_so_far(
    fed: LocalFederation,
    endings: Mapping[str, str],
    data: SiteData,
    model: torch.nn.Module | None,
) -> SiteOutcome:
    """One site's spend and rounds so far (a stopped run: no local-only model is trained)."""
    site = fed.sites[data.name]
    nan = float("nan")
    return SiteOutcome(
        name=data.name,
        num_examples=data.num_examples,
        epsilon=site.ledger.spent(),
        epsilon_budget=fed.dp.epsilon,
        delta=fed.dp.delta,
        noise_multiplier=site.noise_multiplier or 0.0,
        local_only_accuracy=nan,
        federated_accuracy=accuracy(model, data.x_val, data.y_val) if model else nan,
        rounds_trained=len(site.history),
        error=endings.get(data.name, ""),
    )


def _global_accuracy(
    data: FederatedData, model: torch.nn.Module, outcomes: list[SiteOutcome]
) -> float:
    if data.x_test is not None and data.y_test is not None:
        return accuracy(model, data.x_test, data.y_test)
    # no held-out set: pooled accuracy over the sites' validation data
    correct = sum(
        o.federated_accuracy * len(s.y_val) for o, s in zip(outcomes, data.sites, strict=True)
    )
    return correct / sum(len(s.y_val) for s in data.sites)


def parse_data_options(values: Sequence[str]) -> list[tuple[str, str]]:
    """``NAME=PATH.csv`` pairs from the command line."""
    pairs = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--data expects NAME=PATH.csv, got {value!r}")
        pairs.append((name, path))
    check_site_names([name for name, _ in pairs], where="--data")
    return pairs
