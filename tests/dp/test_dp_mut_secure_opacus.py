"""The CSPRNG Opacus parts: one clipped sum released once, batches the keyed coins, empty
batches that stay empty, and the user's loader settings kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.dp import make_private
from securefl.dp._secure_opacus import (
    CsprngDPOptimizer,
    SecurePoissonSampler,
    _SecureDPDataLoader,
    secure_poisson_loader,
)
from securefl.errors import ConfigError
from securefl.hazmat.dgauss import KeystreamRng, bernoulli_rate

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook:UserWarning")

KEY = bytes(range(32))


def _data(n: int = 32) -> TensorDataset:
    gen = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(n, 4, generator=gen), torch.randint(0, 2, (n,), generator=gen))


def test_one_clipped_sum_cannot_be_released_twice() -> None:
    # Two noisy releases of the same clipped sum average to half the noise
    # variance the accountant was charged for; Opacus's processed flag refuses
    # the second, and our add_noise must keep checking it.
    model = nn.Linear(4, 2)
    pt = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        DataLoader(_data(), batch_size=8),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
    )
    opt = pt.optimizer
    assert isinstance(opt, CsprngDPOptimizer)
    for x, y in pt.loader:
        if len(y):
            break
    nn.functional.cross_entropy(pt.model(x), y).backward()  # type: ignore[no-untyped-call]
    opt.step()
    released = [p.grad.clone() for p in opt.params]
    with pytest.raises(ValueError):
        opt.add_noise()
    assert all(torch.equal(p.grad, g) for p, g in zip(opt.params, released, strict=True))


def test_batches_are_exactly_the_keyed_coins_from_the_first_word() -> None:
    sampler = SecurePoissonSampler(num_samples=50, sample_rate=0.3, steps=3, key=KEY)
    rng = KeystreamRng(KEY)
    expected = [np.flatnonzero(bernoulli_rate(rng, 50, 0.3)).tolist() for _ in range(3)]
    assert list(sampler) == expected


def test_a_single_record_and_a_single_step_are_accepted() -> None:
    sampler = SecurePoissonSampler(num_samples=1, sample_rate=1.0, steps=1, key=KEY)
    assert len(sampler) == 1
    assert list(sampler) == [[0]]


@pytest.mark.parametrize(("num_samples", "steps"), [(0, 1), (1, 0)])
def test_no_records_or_no_steps_are_refused(num_samples: int, steps: int) -> None:
    with pytest.raises(ConfigError):
        SecurePoissonSampler(num_samples=num_samples, sample_rate=0.5, steps=steps)


def _double_x(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    xs, ys = zip(*batch, strict=True)
    return [2 * torch.stack(xs), torch.stack(ys)]


def test_the_users_loader_settings_and_collate_function_are_kept() -> None:
    data = _data()
    plain = DataLoader(
        data, batch_size=8, num_workers=2, prefetch_factor=4, timeout=5.0, collate_fn=_double_x
    )
    secure = secure_poisson_loader(plain, key=KEY)
    assert (secure.num_workers, secure.prefetch_factor, secure.timeout) == (2, 4, 5.0)
    batch = [data[0], data[1]]
    x, _ = secure.collate_fn(batch)
    assert torch.equal(x, 2 * torch.stack([data[0][0], data[1][0]]))


class _FixedBatches:
    """A batch sampler yielding given index lists (to place empty batches where needed)."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches
        self.sample_rate = 0.5

    def __iter__(self) -> Any:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


@pytest.mark.parametrize("batches", [[[]], [[0, 1], []]], ids=["first", "later"])
def test_an_empty_poisson_batch_holds_no_record_and_keeps_the_dtypes(
    batches: list[list[int]],
) -> None:
    # An empty batch must stay empty: a made-up all-zero record would be trained on.
    loader = _SecureDPDataLoader(DataLoader(_data(), batch_size=8), _FixedBatches(batches))  # type: ignore[arg-type]
    x, y = list(loader)[-1]
    assert x.shape == (0, 4) and x.dtype == torch.float32
    assert y.shape == (0,) and y.dtype == torch.int64
