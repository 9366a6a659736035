"""Held-out accuracy of local DP-SGD, distributed DP, ideal central DP-SGD and non-private training.

    python bench/privacy_utility.py            # 10 runs per cell
    python bench/privacy_utility.py --runs 3   # fewer, when time presses
    python bench/privacy_utility.py --sample-rate 0.5 --steps 20 --lr 1   # distributed at q < 1

For ε ∈ {0.25, 0.5, 1} and 3 and 6 sites on the bundled data (δ = 1e-5), each
run splits the data with its own seed and trains four ways:

* ``local``: ``simulate``'s defaults, DP-SGD at each site with all its noise
  (12 rounds, batch 32, lr 1, clip 0.5, FedAdam), masked aggregation;
* ``distributed``: ``simulate --privacy distributed``, one DP-SGD step a round
  over every site's Poisson sample, Skellam shares through integer SecAgg+,
  the Skellam RDP accountant (docs/distributed_dp_accounting.md; at q = 1,
  as here, it charges the Skellam's own RDP curve);
* ``central``: the ideal reference, Opacus DP-SGD on all records pooled, the
  same model, (ε, δ) and clip, at q = 1, 10 steps and lr 2 (``distributed``'s
  defaults), with Opacus's PRV accountant;
* ``non-private``: the same model trained on the pooled records without noise.

``--sample-rate``, ``--steps`` and ``--lr`` change ``distributed`` only: the
reference stays fixed, so a setting is judged against the same target.
``--first-seed`` moves the runs' seeds, to choose a setting on other splits
than the ones it is then measured on.

It prints mean ± standard deviation over the runs (the spread) of held-out
test accuracy, one row per cell, and the issue's two checks per cell.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from securefl.config import (
    DistributedConfig,
    DPConfig,
    FederationConfig,
    RoundConfig,
    StrategyConfig,
    TrainConfig,
)
from securefl.data.federations import FederatedData, breast_cancer_federation
from securefl.dp import calibrate_noise, make_private
from securefl.simulation.orchestrator import run_simulation
from securefl.simulation.trainer import accuracy, default_model, make_loader

DELTA = 1e-5
CLIP = 0.5
#: central, and distributed by default: every record each round (q = 1), few full-batch
#: steps. On a few hundred records this needs the least noise per record at a given ε,
#: and it is where the Skellam charge is closest to the Gaussian's (no subsampling).
#: Smaller q with 1/q times the steps and q times the learning rate (the same epochs)
#: was measured and is no better here (docs/distributed_dp.md, "Utility").
RATE, STEPS, LR = 1.0, 10, 2.0


@dataclass(frozen=True)
class Setting:
    """What ``distributed`` trains with (the central reference keeps RATE, STEPS, LR)."""

    rate: float = RATE
    steps: int = STEPS
    lr: float = LR


@dataclass
class Cell:
    sites: int
    epsilon: float
    scores: dict[str, list[float]]


def _config(
    privacy: str, epsilon: float, data: FederatedData, setting: Setting = Setting()
) -> FederationConfig:
    records = sum(s.num_examples for s in data.sites)
    rounds = RoundConfig(
        max_rounds=12 if privacy == "local" else setting.steps,
        min_sites=2,
        stage_timeout_seconds=120,
    )
    if privacy == "local":  # simulate's defaults
        return FederationConfig(
            name="bench",
            dp=DPConfig(epsilon=epsilon, delta=DELTA, max_grad_norm=CLIP, batch_size=32),
            train=TrainConfig(learning_rate=1.0),
            rounds=rounds,
            strategy=StrategyConfig(name="fedadam"),
        )
    return FederationConfig(
        name="bench",
        privacy="distributed",
        distributed=DistributedConfig(sample_rate=setting.rate, records=records),
        dp=DPConfig(epsilon=epsilon, delta=DELTA, max_grad_norm=CLIP),
        train=TrainConfig(learning_rate=setting.lr),
        rounds=rounds,
        strategy=StrategyConfig(name="fedavg"),
    )


def _pooled(data: FederatedData) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([s.x_train for s in data.sites])
    y = np.concatenate([s.y_train for s in data.sites])
    return x, y


def central(data: FederatedData, epsilon: float, seed: int) -> float:
    """Ideal central DP-SGD: Opacus on the pooled records at RATE, STEPS and LR."""
    x, y = _pooled(data)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = default_model(data.num_features, len(data.classes))
    batch = max(1, round(RATE * len(y)))
    loader = make_loader(x, y, batch)
    sigma = calibrate_noise(
        target_epsilon=epsilon, delta=DELTA, sample_rate=1 / len(loader), steps=STEPS
    )
    private = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=LR),
        loader,
        noise_multiplier=sigma,
        max_grad_norm=CLIP,
    )
    loss_fn = nn.CrossEntropyLoss()
    steps = 0
    while steps < STEPS:
        for features, labels in private.loader:
            private.optimizer.zero_grad()
            out = private.model(features)
            (loss_fn(out, labels) if len(labels) else out.sum()).backward()
            private.optimizer.step()
            steps += 1
            if steps == STEPS:
                break
    return accuracy(private.model, data.x_test, data.y_test)


def non_private(data: FederatedData, seed: int) -> float:
    """The same model on the pooled records, full-batch gradient descent, no noise."""
    x, y = _pooled(data)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = default_model(data.num_features, len(data.classes))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    features, labels = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(features), labels).backward()
        opt.step()
    return accuracy(model, data.x_test, data.y_test)


def run_cell(
    sites: int, epsilon: float, runs: int, setting: Setting = Setting(), first_seed: int = 0
) -> Cell:
    scores: dict[str, list[float]] = {
        k: [] for k in ("local", "distributed", "central", "non-private")
    }
    for seed in range(first_seed, first_seed + runs):
        data = breast_cancer_federation(sites=sites, seed=seed)
        for privacy in ("local", "distributed"):
            config = _config(privacy, epsilon, data, setting)
            result = run_simulation(data, config, seed=seed)
            scores[privacy].append(result.global_accuracy)
        scores["central"].append(central(data, epsilon, seed))
        scores["non-private"].append(non_private(data, seed))
    return Cell(sites=sites, epsilon=epsilon, scores=scores)


def _fmt(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--sites", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--sample-rate", type=float, default=RATE, help="distributed's q")
    parser.add_argument("--steps", type=int, default=STEPS, help="distributed's rounds")
    parser.add_argument("--lr", type=float, default=LR, help="distributed's server lr")
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args()
    setting = Setting(rate=args.sample_rate, steps=args.steps, lr=args.lr)
    warnings.filterwarnings("ignore")
    logging.getLogger("securefl").setLevel(logging.ERROR)
    start = time.perf_counter()
    print(
        f"held-out test accuracy, mean ± sd over {args.runs} runs from seed {args.first_seed} "
        f"(δ = {DELTA:g}); distributed at q = {setting.rate:g}, {setting.steps} steps, "
        f"lr {setting.lr:g}; central at q = {RATE:g}, {STEPS} steps, lr {LR:g}"
    )
    print(
        "| sites | ε | local | distributed | ideal central | non-private "
        "| dist. within 0.01 of central | dist. above local by > spread |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for sites in args.sites:
        for epsilon in args.epsilons:
            cell = run_cell(sites, epsilon, args.runs, setting, args.first_seed)
            s = cell.scores
            mean = {k: statistics.mean(v) for k, v in s.items()}
            spread = max(
                statistics.stdev(s["local"]) if args.runs > 1 else 0.0,
                statistics.stdev(s["distributed"]) if args.runs > 1 else 0.0,
            )
            within = mean["distributed"] >= mean["central"] - 0.01
            needed = mean["local"] < mean["central"] - 0.01
            above = mean["distributed"] - mean["local"] > spread
            second = ("yes" if above else "no") if needed else "n/a (local within 0.01)"
            print(
                f"| {sites} | {epsilon:g} | {_fmt(s['local'])} | {_fmt(s['distributed'])} "
                f"| {_fmt(s['central'])} | {_fmt(s['non-private'])} "
                f"| {'yes' if within else 'no'} | {second} |",
                flush=True,
            )
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
