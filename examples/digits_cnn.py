"""A small CNN on images, federated: scikit-learn's 8×8 handwritten digits.

Run it:  python examples/digits_cnn.py

The same wrapping as ``wrap_existing_trainer.py`` (the lines marked
``# securefl``), on a convolutional network: what a hospital's imaging model
looks like, at the size of a test. Normalisation is GroupNorm: BatchNorm
mixes the examples of a batch, so DP-SGD cannot clip one patient's gradient
on its own (securefl refuses it and says so; ``fix_model=True`` swaps it).
The digits ship with scikit-learn, so nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl import DPConfig, RoundConfig, Site, StrategyConfig, TrainConfig
from securefl.simulation import LocalFederation

SITES = ("clinic-a", "clinic-b", "clinic-c")


def small_cnn() -> nn.Module:
    """One convolution with GroupNorm, then a linear classifier over the ten digits."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.GroupNorm(2, 8),  # not BatchNorm: see above
        nn.ReLU(),
        nn.MaxPool2d(2),  # 8×8 -> 4×4
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )


# ---- the clinic's existing code, unchanged ------------------------------------
def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader) -> None:
    model.train()
    for images, labels in loader:
        optimizer.zero_grad()
        output = model(images)
        # an empty (Poisson-sampled) batch still takes its noisy step
        loss = nn.functional.cross_entropy(output, labels) if len(labels) else output.sum()
        loss.backward()
        optimizer.step()


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    model.eval()
    return {"val_accuracy": float((model(images).argmax(1) == labels).float().mean())}


# ---- the training function, after wrapping ------------------------------------
def train(  # securefl (the site: one argument more)
    site: Site, data: TensorDataset, val: tuple[torch.Tensor, torch.Tensor]
) -> float:
    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loader = DataLoader(data, batch_size=64, shuffle=True)
    model, optimizer, loader = site.privatize(model, optimizer, loader)  # securefl
    for rnd in site.rounds(model):  # securefl (was: for epoch in range(epochs):)
        train_one_epoch(model, optimizer, loader)
        rnd.submit(num_examples=len(data), metrics=evaluate(model, *val))  # securefl
    return evaluate(model, *val)["val_accuracy"]  # the federated model, after the last round


# ---- the digits, split across three clinics -----------------------------------
def clinic_data(
    seed: int = 0,
) -> dict[str, tuple[TensorDataset, tuple[torch.Tensor, torch.Tensor]]]:
    """Each clinic gets a third of the 1,797 images; a fifth of each is its validation set."""
    digits = load_digits()
    images = torch.from_numpy((digits.images / 16.0).astype(np.float32)).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    order = np.random.default_rng(seed).permutation(len(labels))
    out = {}
    for name, part in zip(SITES, np.array_split(order, len(SITES)), strict=True):
        cut = len(part) * 4 // 5
        train_idx, val_idx = part[:cut], part[cut:]
        out[name] = (
            TensorDataset(images[train_idx], labels[train_idx]),
            (images[val_idx], labels[val_idx]),
        )
    return out


def main(rounds: int = 5) -> None:
    torch.manual_seed(0)  # the split and the initial weights; DP noise never uses it
    data = clinic_data()
    final: dict[str, float] = {}
    with LocalFederation(  # in a real deployment: one Site per clinic, from its kit
        site_names=list(data),
        initial_model=small_cnn(),
        dp=DPConfig(epsilon=2.0, delta=1e-5, batch_size=64, max_grad_norm=1.0),
        train=TrainConfig(),
        rounds=RoundConfig(max_rounds=rounds),
        strategy=StrategyConfig(),
        max_weight=1000.0,
    ) as fed:
        run = fed.run(lambda site: final.update({site.name: train(site, *data[site.name])}))
        for summary in run.history:
            print(
                f"round {summary.round}: {summary.status}, mean validation accuracy "
                f"{summary.metrics.get('val_accuracy', float('nan')):.3f}"
            )
        for name, site in fed.sites.items():
            print(
                f"{name}: federated model accuracy {final[name]:.3f} on its own validation "
                f"images (chance: 0.1); spent ε = {site.ledger.spent():.3f} of {site.dp.epsilon}"
            )


if __name__ == "__main__":
    main()
