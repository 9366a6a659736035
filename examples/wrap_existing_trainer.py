"""Wrap an existing PyTorch training loop with securefl: five changed lines.

Run it:  python examples/wrap_existing_trainer.py

or, one process per site from provisioned kits (examples/wrap_over_processes.py):
    securefl client --kit kits/site-a/ --train examples.wrap_existing_trainer:train

The loop below is an ordinary one (``train_one_epoch``, ``evaluate``). The
lines marked ``# securefl`` are the only changes a hospital makes; the rest
of this file builds toy data and an in-process federation of three sites so
the example runs on one machine. With provisioned kits the same ``train``
function runs unchanged at each hospital: ``securefl client`` calls it with
the site only, and it then takes the site's toy data (a real hospital's
function reads its own records there).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl import DPConfig, RoundConfig, Site, StrategyConfig, TrainConfig
from securefl.simulation import LocalFederation


# ---- the hospital's existing code, unchanged ---------------------------------
def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader) -> None:
    model.train()
    for features, labels in loader:
        optimizer.zero_grad()
        output = model(features)
        # an empty (Poisson-sampled) batch still takes its noisy step
        loss = nn.functional.cross_entropy(output, labels) if len(labels) else output.sum()
        loss.backward()
        optimizer.step()


@torch.no_grad()
def evaluate(model: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    model.eval()
    return {"val_accuracy": float((model(features).argmax(1) == labels).float().mean())}


# ---- the training function, after wrapping ------------------------------------
def train(
    site: Site,
    data: TensorDataset | None = None,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> None:
    if data is None or val is None:  # run by `securefl client`: this hospital's own records
        data, val = toy_site(zlib.crc32(site.name.encode()))
    model = nn.Sequential(nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = DataLoader(data, batch_size=32, shuffle=True)
    model, optimizer, loader = site.privatize(model, optimizer, loader)  # securefl
    for rnd in site.rounds(model):  # securefl (was: for epoch in range(epochs):)
        train_one_epoch(model, optimizer, loader)
        rnd.submit(num_examples=len(data), metrics=evaluate(model, *val))  # securefl


# ---- toy data and an in-process federation ------------------------------------
def toy_site(seed: int) -> tuple[TensorDataset, tuple[torch.Tensor, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    t_x, t_y = torch.from_numpy(x), torch.from_numpy(y)
    return TensorDataset(t_x[:240], t_y[:240]), (t_x[240:], t_y[240:])


def main() -> None:
    torch.manual_seed(0)
    data = {name: toy_site(i) for i, name in enumerate(["site-a", "site-b", "site-c"])}
    fed = LocalFederation(  # securefl (in a real deployment: one Site per hospital)
        site_names=list(data),
        initial_model=nn.Sequential(nn.Linear(8, 2)),
        dp=DPConfig(epsilon=2.0, delta=1e-5, batch_size=32),
        train=TrainConfig(),
        rounds=RoundConfig(max_rounds=5),
        strategy=StrategyConfig(),
        max_weight=1000.0,
    )
    driver = fed.run(lambda site: train(site, *data[site.name]))
    for summary in driver.history:
        print(
            f"round {summary.round}: {summary.status}, "
            f"mean validation accuracy {summary.metrics.get('val_accuracy', float('nan')):.3f}"
        )
    for name, site in fed.sites.items():
        print(f"{name}: spent ε = {site.ledger.spent():.3f} of {site.dp.epsilon}")


if __name__ == "__main__":
    main()
