"""Both randomness paths of make_private: Poisson batches, and noise the torch seed cannot fix.

Every accountant the project uses assumes Poisson subsampling (each record
joins each batch independently with probability q); with fixed-size batches
the recorded ε would be under-reported. And noise that a global
``torch.manual_seed`` reproduces is no noise to someone who knows the seed.
These tests hold for the default (AES-CTR) path and for the opt-out path
(``secure_rng=False``, Opacus's own sampler and noise seeded from the OS).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.data_loader import DPDataLoader
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.dp import make_private

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook:UserWarning")

PATHS = pytest.mark.parametrize("secure_rng", [True, False], ids=["aes-ctr", "opt-out"])


def _loader(n: int = 64, batch_size: int = 8) -> DataLoader:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=gen)
    y = torch.randint(0, 2, (n,), generator=gen)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def _private(secure_rng: bool, **kw: int):
    model = nn.Linear(4, 2)
    return make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        _loader(**kw),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        secure_rng=secure_rng,
    )


@PATHS
def test_batches_are_poisson_samples_whose_size_varies_across_steps(secure_rng: bool) -> None:
    pt = _private(secure_rng)
    assert isinstance(pt.loader, DPDataLoader)
    assert pt.sample_rate == pytest.approx(1 / 8)
    sizes = [len(y) for _ in range(40) for _, y in pt.loader]
    # 320 Binomial(64, 1/8) draws: a fixed batch size (no Poisson sampling) gives one value
    assert len(set(sizes)) > 3
    assert abs(np.mean(sizes) - 8) < 1.0
    assert np.var(sizes) > 3.0  # the binomial's variance is 7; fixed batches give 0


@PATHS
def test_noise_differs_under_a_fixed_torch_seed_with_the_batch_held_fixed(
    secure_rng: bool,
) -> None:
    """Same seed, same model, same batch: only the noise can make the two steps differ."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(8, 4, generator=gen)
    y = torch.randint(0, 2, (8,), generator=gen)
    grads = []
    for _ in range(2):
        torch.manual_seed(0)
        pt = _private(secure_rng)
        torch.manual_seed(0)
        pt.optimizer.zero_grad()
        nn.functional.cross_entropy(pt.model(x), y).backward()
        pt.optimizer.step()
        grads.append(torch.cat([p.grad.detach().flatten() for p in pt.model.parameters()]))
    # the clipped sums are equal (same weights, same batch); the released gradients are not
    assert not torch.equal(grads[0], grads[1])


@PATHS
def test_batch_membership_is_not_fixed_by_the_torch_seed(secure_rng: bool) -> None:
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        pt = _private(secure_rng)
        torch.manual_seed(0)
        runs.append([tuple(y.tolist()) + tuple(x.flatten().tolist()) for x, y in pt.loader])
    assert runs[0] != runs[1]
