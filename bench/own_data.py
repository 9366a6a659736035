"""Own tabular data at ε = 1: federated vs alone vs central DP-SGD vs non-private.

Two public tabular data sets that scikit-learn ships (no download), each
written as three non-IID sites' CSV files and a declared schema, then run
through ``securefl simulate --data ... --schema ...`` exactly as a user
would. The baselines use the very same train/validation split:

- ``alone``: each site alone, same data, same DP budget (``simulate``'s own
  counterfactual, averaged over the sites; n/a under distributed DP, for
  which ``simulate`` does not compute it);
- ``central DP-SGD``: one curator holding all sites' training records, the
  same model, clip, learning rate and ε, and the same recipe as the row's
  federated run: for ``local``, the sites' batch size and one epoch per
  round; for ``distributed``, one full-batch step per round (q = 1) handed
  to FedAdam as ``simulate --privacy distributed`` does, with Gaussian noise
  calibrated by the PRV accountant (no Skellam bound, no integer rounding);
- ``pooled LR``: non-private logistic regression on the pooled records.

All are scored on the pooled validation records (each site's 20%).

Data sets and why their schemas are public knowledge, not statistics of the
records:

- ``diabetes``: 442 patients (Efron et al. 2004): age, sex, BMI, blood
  pressure and six serum measurements; label = disease progression after one
  year above 140 (about the median). Ranges are wide clinical ranges; sex is
  categorical (codes 1 and 2). Sites split by age.
- ``wine``: 178 wines of three cultivars, 13 chemical measurements; ranges
  from the data set's published documentation (UCI), rounded outward. Sites
  split by alcohol content.

Run: ``python bench/own_data.py [--runs 5] [--first-seed 0] [--epsilon 1]
[--privacy local|distributed] [--signed-log]`` (``--privacy`` is repeatable,
both by default; ``--signed-log`` adds the run without a schema, for
comparison). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from click.testing import CliRunner
from sklearn.datasets import load_diabetes, load_wine
from sklearn.linear_model import LogisticRegression

from securefl.cli import cli as cli_main
from securefl.cli.simulate import DEFAULT_BATCH, DEFAULT_CLIP, DEFAULT_LR, DEFAULT_ROUNDS
from securefl.config import StrategyConfig
from securefl.data.federations import csv_federation
from securefl.data.schema import load_schema
from securefl.dp import calibrate_noise, make_private
from securefl.params import ParamSpec, load_vector_into, model_vector, unwrap
from securefl.simulation.trainer import accuracy, default_model, make_loader, train_one_epoch
from securefl.strategy.fedavg import make_strategy

EPSILON = 1.0
DELTA = 1e-5

DIABETES_RANGES = {  # wide clinical ranges, not the sample's minima and maxima
    "age": (18, 90),
    "bmi": (15, 50),
    "bp": (50, 140),  # mean arterial pressure, mmHg
    "s1": (80, 350),  # total cholesterol, mg/dl
    "s2": (30, 250),  # LDL
    "s3": (15, 100),  # HDL
    "s4": (1, 10),  # total / HDL ratio
    "s5": (3, 6.5),  # log of serum triglycerides
    "s6": (50, 140),  # blood glucose, mg/dl
}
WINE_RANGES = {  # the UCI documentation's min and max per attribute, rounded outward
    "alcohol": (11, 15),
    "malic_acid": (0.7, 5.9),
    "ash": (1.3, 3.3),
    "alcalinity_of_ash": (10, 30),
    "magnesium": (70, 162),
    "total_phenols": (0.9, 3.9),
    "flavanoids": (0.3, 5.1),
    "nonflavanoid_phenols": (0.1, 0.7),
    "proanthocyanins": (0.4, 3.6),
    "color_intensity": (1.2, 13),
    "hue": (0.4, 1.8),
    "od280/od315_of_diluted_wines": (1.2, 4.0),
    "proline": (270, 1680),
}


def diabetes() -> tuple[list[str], np.ndarray, list[str], dict[str, Any], int]:
    raw = load_diabetes(scaled=False)
    names = list(raw.feature_names)
    labels = ["high" if t > 140 else "low" for t in raw.target]
    columns: list[dict[str, Any]] = []
    for n in names:
        if n == "sex":
            columns.append({"name": n, "type": "categorical", "categories": ["1", "2"]})
        else:
            columns.append({"name": n, "type": "numeric", "range": list(DIABETES_RANGES[n])})
    return names, np.asarray(raw.data), labels, {"columns": columns}, names.index("age")


def wine() -> tuple[list[str], np.ndarray, list[str], dict[str, Any], int]:
    raw = load_wine()
    names = list(raw.feature_names)
    labels = [f"cultivar-{t}" for t in raw.target]
    columns = [{"name": n, "type": "numeric", "range": list(WINE_RANGES[n])} for n in names]
    return names, np.asarray(raw.data), labels, {"columns": columns}, names.index("alcohol")


def _cell(name: str, value: float) -> str:
    return str(int(value)) if name == "sex" else repr(float(value))


def write_sites(folder: Path, dataset: Any, seed: int, sites: int = 3) -> list[tuple[str, Path]]:
    """Three sites ordered by one feature, 30% of records mixed in at random (non-IID)."""
    names, x, labels, _schema, by = dataset
    rng = np.random.default_rng(seed)
    order = np.argsort(x[:, by] + 1e-9 * rng.random(len(x)), kind="stable")
    assignment = np.repeat(np.arange(sites), int(np.ceil(len(order) / sites)))[: len(order)]
    mixed = rng.random(len(order)) < 0.3
    assignment[mixed] = rng.integers(0, sites, int(mixed.sum()))
    paths = []
    for i in range(sites):
        path = folder / f"site{i}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow([*names, "y"])
            for row in order[assignment == i]:
                writer.writerow(
                    [*(_cell(n, v) for n, v in zip(names, x[row], strict=True)), labels[row]]
                )
        paths.append((f"site-{chr(ord('a') + i)}", path))
    return paths


def central_dp_sgd(xt: np.ndarray, yt: np.ndarray, classes: int, seed: int, args: Any) -> Any:
    """One curator with every site's training records, the same recipe and ε."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = default_model(xt.shape[1], classes)
    loader = make_loader(xt, yt, args.batch_size)
    batches = len(loader)
    epochs = args.rounds  # one local epoch per round at the sites
    sigma = calibrate_noise(
        target_epsilon=args.epsilon, delta=DELTA, sample_rate=1.0 / batches, steps=epochs * batches
    )
    sgd = torch.optim.SGD(model.parameters(), lr=args.lr)
    private = make_private(model, sgd, loader, noise_multiplier=sigma, max_grad_norm=args.clip)
    for _ in range(epochs):
        train_one_epoch(private.model, private.optimizer, private.loader)
    return private.model


def central_one_step_a_round(
    xt: np.ndarray, yt: np.ndarray, classes: int, seed: int, args: Any
) -> Any:
    """Distributed DP's recipe on one curator: a full-batch noisy step a round, then FedAdam.

    The same q = 1, rounds, clip, learning rate and server strategy as
    ``simulate --privacy distributed``, with Gaussian noise calibrated by the
    PRV accountant: what the distributed run would reach with a perfect
    accountant and no integer rounding.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = default_model(xt.shape[1], classes)
    loader = make_loader(xt, yt, len(yt))
    sigma = calibrate_noise(
        target_epsilon=args.epsilon, delta=DELTA, sample_rate=1.0, steps=args.rounds
    )
    sgd = torch.optim.SGD(model.parameters(), lr=args.lr)
    private = make_private(model, sgd, loader, noise_multiplier=sigma, max_grad_norm=args.clip)
    spec = ParamSpec.from_state_dict(unwrap(private.model).state_dict())
    server = make_strategy(StrategyConfig(name="fedadam"))
    for rnd in range(1, args.rounds + 1):
        before = model_vector(private.model, spec).astype(np.float64)
        train_one_epoch(private.model, private.optimizer, private.loader)  # one step
        update = model_vector(private.model, spec) - before
        load_vector_into(private.model, server.apply(before, update, rnd), spec)
    return private.model


def one_run(
    dataset: Any, seed: int, args: Any, use_schema: bool, privacy: str = "local"
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_sites(folder, dataset, seed)
        schema_file = folder / "schema.json"
        schema_file.write_text(json.dumps(dataset[3]), encoding="utf-8")
        cli = ["simulate", "--label", "y", "--seed", str(seed), "--json", "--privacy", privacy]
        cli += ["--epsilon", str(args.epsilon), "--delta", str(DELTA), "--rounds", str(args.rounds)]
        cli += [
            "--lr",
            str(args.lr),
            "--clip",
            str(args.clip),
            "--batch-size",
            str(args.batch_size),
        ]
        for name, path in paths:
            cli += ["--data", f"{name}={path}"]
        if use_schema:
            cli += ["--schema", str(schema_file)]
        result = CliRunner().invoke(cli_main, cli)
        if result.exit_code != 0:
            raise SystemExit(f"simulate failed ({result.exit_code}): {result.output}")
        summary = json.loads(result.stdout)
        schema = load_schema(schema_file) if use_schema else None
        data = csv_federation(paths, label="y", seed=seed, schema=schema)
    xt = np.concatenate([s.x_train for s in data.sites])
    yt = np.concatenate([s.y_train for s in data.sites])
    xv = np.concatenate([s.x_val for s in data.sites])
    yv = np.concatenate([s.y_val for s in data.sites])
    reference = central_dp_sgd if privacy == "local" else central_one_step_a_round
    central = reference(xt, yt, len(data.classes), seed, args)
    lr = LogisticRegression(max_iter=5000).fit(xt, yt)
    n_val = [len(s.y_val) for s in data.sites]
    alone = [s["local_only_accuracy"] for s in summary["sites"]]
    return {
        "federated": float(summary["global"]["accuracy"]),
        # distributed DP has no local-only counterfactual (simulate shows n/a)
        "alone": float(np.average(alone, weights=n_val)) if None not in alone else float("nan"),
        "central": accuracy(central, xv, yv),
        "pooled_lr": float((lr.predict(xv) == yv).mean()),
        "majority": float(np.bincount(yv).max() / len(yv)),
    }


def _cellfmt(values: list[float]) -> str:
    if any(v != v for v in values):
        return "n/a"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--epsilon", type=float, default=EPSILON)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--lr", type=float, default=DEFAULT_LR)
    parser.add_argument("--clip", type=float, default=DEFAULT_CLIP)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--signed-log", action="store_true", help="also run without a schema")
    parser.add_argument("--only", choices=("diabetes", "wine"), default=None)
    parser.add_argument(
        "--privacy",
        choices=("local", "distributed"),
        action="append",
        help="privacy model of the federated run (repeatable; default: both)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    sets = {"diabetes": diabetes, "wine": wine}
    print(
        f"ε = {args.epsilon}, δ = {DELTA}, {args.runs} runs "
        f"(seeds {args.first_seed}..{args.first_seed + args.runs - 1}), "
        f"rounds={args.rounds} lr={args.lr} clip={args.clip} batch={args.batch_size}; "
        "accuracy on the pooled validation records, mean ± standard deviation\n"
    )
    models = args.privacy or ["local", "distributed"]
    seeds = range(args.first_seed, args.first_seed + args.runs)
    print(
        "| data set | transform | privacy | federated | each site alone | central DP-SGD "
        "| pooled LR (non-private) | majority class |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, make in sets.items():
        if args.only and name != args.only:
            continue
        dataset = make()
        for use_schema in (True, False) if args.signed_log else (True,):
            for privacy in models:
                runs = [one_run(dataset, seed, args, use_schema, privacy) for seed in seeds]
                cols = ["federated", "alone", "central", "pooled_lr", "majority"]
                cells = " | ".join(_cellfmt([r[c] for r in runs]) for c in cols)
                how = "schema" if use_schema else "signed-log"
                print(f"| {name} | {how} | {privacy} | {cells} |")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
