"""Opacus with CSPRNG noise and Poisson sampling, without torchcsprng.

Opacus's own ``secure_mode`` needs ``torchcsprng`` (no release for torch 2.x)
and still samples floating-point Gaussians. We keep Opacus for what it does
well (per-sample gradients, clipping, the step hooks) and replace its two
sources of randomness through its public extension points:

* :class:`CsprngDPOptimizer` is a ``DPOptimizer`` whose :meth:`add_noise`
  releases the clipped sum through :class:`~securefl.dp.noise.SecureGaussianNoise`
  (exact integer noise on a grid, AES-256-CTR keystream).
* :func:`secure_poisson_loader` is a ``DPDataLoader`` whose batch sampler
  includes every record with probability q from the same kind of keystream.

Neither reads torch's or numpy's global generators, so ``torch.manual_seed``
cannot make the batches or the noise predictable.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from opacus.data_loader import DPDataLoader, dtype_safe, shape_safe, wrap_collate_with_empty
from opacus.optimizers import DPOptimizer
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed
from torch.utils.data import DataLoader, IterableDataset, Sampler
from torch.utils.data._utils.collate import default_collate

from securefl.dp.noise import SecureGaussianNoise
from securefl.errors import ConfigError
from securefl.hazmat.dgauss import KeystreamRng, bernoulli_rate

__all__ = ["CsprngDPOptimizer", "SecurePoissonSampler", "secure_poisson_loader"]


class SecurePoissonSampler(Sampler[list[int]]):
    """``steps`` batches; each record joins each batch with probability ``sample_rate``.

    The same law as Opacus's ``UniformWithReplacementSampler``, but the coins
    come from :func:`~securefl.hazmat.dgauss.bernoulli_rate` over an
    AES-256-CTR keystream under a fresh ``os.urandom`` key.
    """

    def __init__(
        self, *, num_samples: int, sample_rate: float, steps: int, key: bytes | None = None
    ) -> None:
        if num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
        if steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps}")
        self.num_samples = num_samples
        self.sample_rate = sample_rate
        self.steps = steps
        self._rng = KeystreamRng(key)
        bernoulli_rate(self._rng, 0, sample_rate)  # validates the rate now

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            mask = bernoulli_rate(self._rng, self.num_samples, self.sample_rate)
            yield np.flatnonzero(mask).tolist()


class _SecureDPDataLoader(DPDataLoader):  # type: ignore[misc]
    """A ``DPDataLoader`` built around :class:`SecurePoissonSampler`.

    ``DPDataLoader.__init__`` hard-wires Opacus's torch-generator sampler, so
    this sets the same attributes itself and hands the sampler to
    ``DataLoader`` directly; everything else (empty-batch collation, the
    ``sample_rate`` attribute) is Opacus's.
    """

    def __init__(self, loader: DataLoader[Any], sampler: SecurePoissonSampler) -> None:
        dataset = loader.dataset
        self.sample_rate = sampler.sample_rate
        self.distributed = False
        first = dataset[0]
        DataLoader.__init__(
            self,
            dataset=dataset,
            batch_sampler=sampler,
            collate_fn=wrap_collate_with_empty(
                collate_fn=loader.collate_fn or default_collate,
                batch_first=True,
                rand_on_empty=False,
                sample_empty_shapes=[(0, *shape_safe(x)) for x in first],
                dtypes=[dtype_safe(x) for x in first],
            ),
            num_workers=loader.num_workers,
            pin_memory=loader.pin_memory,
            timeout=loader.timeout,
            worker_init_fn=loader.worker_init_fn,
            multiprocessing_context=loader.multiprocessing_context,
            prefetch_factor=loader.prefetch_factor,
            persistent_workers=loader.persistent_workers,
        )


def secure_poisson_loader(loader: DataLoader[Any], *, key: bytes | None = None) -> DataLoader[Any]:
    """Opacus's Poisson loader for ``loader`` (q = 1/len(loader)), sampled from a CSPRNG."""
    if isinstance(loader.dataset, IterableDataset):
        raise ConfigError("Poisson sampling needs a map-style dataset, not an IterableDataset")
    steps = len(loader)
    sampler = SecurePoissonSampler(
        num_samples=len(loader.dataset),  # type: ignore[arg-type]
        sample_rate=1.0 / steps,
        steps=steps,
        key=key,
    )
    return _SecureDPDataLoader(loader, sampler)


class CsprngDPOptimizer(DPOptimizer):  # type: ignore[misc]
    """``DPOptimizer`` whose noise is :class:`SecureGaussianNoise` over all its parameters.

    Opacus calls :meth:`add_noise` once per step after per-sample clipping
    and summing; the noisy sum goes to ``p.grad`` exactly as in Opacus, and
    Opacus then scales it by the expected batch size.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        noise: SecureGaussianNoise | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(optimizer, **kwargs)
        dims = sum(p.numel() for p in self.params)
        self.secure_noise = noise or SecureGaussianNoise(
            noise_multiplier=self.noise_multiplier, max_grad_norm=self.max_grad_norm, dims=dims
        )
        if self.secure_noise.plan.dims != dims:
            raise ConfigError(f"noise planned for {self.secure_noise.plan.dims} values, not {dims}")

    def add_noise(self) -> None:
        """Replace Opacus's floating-point Gaussian with the grid mechanism."""
        sums = []
        for p in self.params:
            _check_processed_flag(p.summed_grad)
            sums.append(p.summed_grad.detach().to("cpu", torch.float64).reshape(-1).numpy())
        noisy = self.secure_noise.privatize(np.concatenate(sums))
        offset = 0
        for p in self.params:
            n = p.summed_grad.numel()
            part = torch.from_numpy(noisy[offset : offset + n])
            p.grad = part.to(p.summed_grad.device, p.summed_grad.dtype).view_as(p)
            offset += n
            _mark_as_processed(p.summed_grad)
