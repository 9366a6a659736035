"""make_private's default randomness: AES-CTR noise and Poisson sampling, never torch's RNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.dp import make_private
from securefl.dp._secure_opacus import CsprngDPOptimizer, SecurePoissonSampler
from securefl.dp.noise import SecureGaussianNoise

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook:UserWarning")


def loader(n: int = 64, batch_size: int = 8) -> DataLoader:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=gen)
    y = torch.randint(0, 2, (n,), generator=gen)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def one_step(pt) -> None:
    for x, y in pt.loader:
        if len(y):
            pt.optimizer.zero_grad()
            nn.functional.cross_entropy(pt.model(x), y).backward()
            pt.optimizer.step()
            return
    pytest.fail("every Poisson batch was empty")


def _torch_rng_forbidden(*_: object, **__: object) -> None:
    raise AssertionError("torch's generator was used for DP randomness")


def test_default_training_never_touches_torchs_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    # Swapping either sampler back to torch's (Opacus's own noise or its
    # UniformWithReplacementSampler) calls one of these and turns this red.
    model = nn.Linear(4, 2)
    pt = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        loader(),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
    )
    assert pt.secure_rng
    for name in ("normal", "randn", "rand", "randint", "randperm", "bernoulli"):
        monkeypatch.setattr(torch, name, _torch_rng_forbidden)
    monkeypatch.setattr(torch.Tensor, "normal_", _torch_rng_forbidden)
    for _ in range(3):
        one_step(pt)
    assert pt.steps_taken() == 3
    assert pt.actual_event().secure_rng is True


def test_the_released_gradient_is_the_keyed_mechanisms_output() -> None:
    # Known answer through Opacus: inject a key, recompute the release from
    # the clipped sum Opacus computed, compare with the gradient the step used.
    model = nn.Linear(4, 2)
    pt = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        loader(),
        noise_multiplier=1.3,
        max_grad_norm=0.7,
    )
    opt = pt.optimizer
    assert isinstance(opt, CsprngDPOptimizer)
    key = bytes(range(32))
    dims = sum(p.numel() for p in opt.params)
    opt.secure_noise = SecureGaussianNoise._from_parts(
        noise_multiplier=1.3, max_grad_norm=0.7, dims=dims, key=key
    )
    one_step(pt)
    summed = np.concatenate([p.summed_grad.double().reshape(-1).numpy() for p in opt.params])
    expected = (
        SecureGaussianNoise._from_parts(
            noise_multiplier=1.3, max_grad_norm=0.7, dims=dims, key=key
        ).privatize(summed)
        / opt.expected_batch_size
    )
    got = np.concatenate([p.grad.double().reshape(-1).numpy() for p in opt.params])
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-6)


def test_noise_and_batches_differ_across_runs_under_a_fixed_torch_seed() -> None:
    params, batches = [], []
    for _ in range(2):
        torch.manual_seed(0)
        model = nn.Linear(4, 2)
        pt = make_private(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            loader(),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
        )
        torch.manual_seed(0)
        batches.append([len(y) for _, y in pt.loader])
        torch.manual_seed(0)
        one_step(pt)
        params.append(torch.cat([p.detach().flatten() for p in pt.model.parameters()]))
    assert not torch.equal(params[0], params[1])
    assert batches[0] != batches[1]


def test_poisson_batches_vary_and_follow_the_binomial() -> None:
    sampler = SecurePoissonSampler(num_samples=100, sample_rate=0.2, steps=2000, key=bytes(32))
    sizes = np.array([len(b) for b in sampler])
    assert len(sizes) == 2000
    support = np.arange(8, 33)
    observed = np.array([(sizes == s).sum() for s in support], dtype=np.float64)
    expected = stats.binom.pmf(support, 100, 0.2) * sizes.size
    observed = np.append(observed, sizes.size - observed.sum())
    expected = np.append(expected, sizes.size - expected.sum())
    assert stats.chisquare(observed, expected).pvalue > 1e-4


def test_poisson_loader_of_make_private_draws_each_record_independently() -> None:
    model = nn.Linear(4, 2)
    pt = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        loader(n=64, batch_size=8),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
    )
    assert pt.sample_rate == 1 / 8
    sizes = [len(y) for _ in range(40) for _, y in pt.loader]
    assert len(set(sizes)) > 3  # not fixed-size batches
    assert abs(np.mean(sizes) - 8) < 1.0


def test_opting_out_still_works_and_is_recorded() -> None:
    model = nn.Linear(4, 2)
    pt = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        loader(),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        secure_rng=False,
    )
    assert not isinstance(pt.optimizer, CsprngDPOptimizer)
    one_step(pt)
    assert pt.actual_event().secure_rng is False


@pytest.mark.slow
def test_a_default_simulation_records_secure_rng_and_the_audit_has_no_warning(tmp_path) -> None:
    import json

    from securefl.config import DPConfig, FederationConfig, RoundConfig, StrategyConfig, TrainConfig
    from securefl.data import breast_cancer_federation
    from securefl.reports import audit
    from securefl.simulation import run_simulation

    assert DPConfig().secure_rng is True
    run_simulation(
        breast_cancer_federation(seed=1),
        FederationConfig(
            dp=DPConfig(epsilon=1.0, batch_size=32),
            train=TrainConfig(),
            rounds=RoundConfig(max_rounds=1, stage_timeout_seconds=60),
            strategy=StrategyConfig(),
        ),
        out=tmp_path,
    )
    records = [
        json.loads(line)
        for path in (tmp_path / "records").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert records and all(r["event"]["secure_rng"] is True for r in records)
    report = audit([tmp_path])
    assert report.passed
    assert "no_secure_rng" not in {f.code for f in report.findings}
