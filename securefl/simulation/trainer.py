"""The built-in trainer ``simulate`` uses: an ordinary PyTorch loop on the Site API.

It is deliberately written the way a user would write theirs (see
``examples/wrap_existing_trainer.py``), so the path users take is the path
the simulation exercises every day.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.data.federations import SiteData
from securefl.runtime.site import Site

__all__ = [
    "accuracy",
    "default_model",
    "make_loader",
    "run_distributed_site",
    "run_site",
    "train_one_epoch",
]


def default_model(num_features: int, num_classes: int) -> nn.Module:
    """Multinomial logistic regression: the small model DP-SGD trains best on tabular data."""
    return nn.Sequential(nn.Linear(num_features, num_classes))


def make_loader(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    batch_size: int,
    generator: torch.Generator | None = None,
) -> DataLoader[Any]:
    dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)


def train_one_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader[Any]
) -> None:
    """One pass over the (Poisson-sampled) loader with cross-entropy loss."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    for features, labels in loader:
        optimizer.zero_grad()
        output = model(features)
        # Poisson sampling can draw an empty batch; it must still take a noisy
        # step, as the accountant assumes, so its loss is a zero with a graph.
        loss = loss_fn(output, labels) if len(labels) else output.sum()
        loss.backward()
        optimizer.step()


@torch.no_grad()
def accuracy(model: nn.Module, x: npt.NDArray[np.float32], y: npt.NDArray[np.int64]) -> float:
    """Share of correct predictions."""
    model.eval()
    predictions = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((predictions == y).mean())


def run_site(
    site: Site,
    data: SiteData,
    model: nn.Module,
    *,
    batch_size: int,
    learning_rate: float,
    momentum: float = 0.0,
    local_epochs: int,
) -> nn.Module:
    """Train at one site for as long as the federation runs; returns the final model."""
    sgd = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum)
    loader = make_loader(data.x_train, data.y_train, batch_size)
    model, optimizer, loader = site.privatize(model, sgd, loader)
    for rnd in site.rounds(model):
        global_accuracy = accuracy(model, data.x_val, data.y_val)
        for _ in range(local_epochs):
            train_one_epoch(model, optimizer, loader)
        rnd.submit(num_examples=data.num_examples, metrics={"val_accuracy": global_accuracy})
    return model


def run_distributed_site(site: Site, data: SiteData, model: nn.Module) -> nn.Module:
    """``privacy = "distributed"``: each round one Poisson batch, one clipped sum, one submit.

    The optimizer's learning rate is not used here: the server takes the
    step (``train.learning_rate``) on the sum of every site's clipped sums.
    """
    sgd = torch.optim.SGD(model.parameters(), lr=1.0)
    loader = make_loader(data.x_train, data.y_train, batch_size=1)
    model, optimizer, loader = site.privatize(model, sgd, loader)
    loss_fn = nn.CrossEntropyLoss()
    for rnd in site.rounds(model):
        global_accuracy = accuracy(model, data.x_val, data.y_val)
        features, labels = rnd.batch()
        model.train()
        optimizer.zero_grad()
        output = model(features)
        loss = loss_fn(output, labels) if len(labels) else output.sum()
        loss.backward()
        optimizer.step()
        rnd.submit(metrics={"val_accuracy": global_accuracy})
    return model
