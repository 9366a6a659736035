"""Opacus integration: model validation, fixing, step counting, clipping, randomness."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.dp import DPEvent, make_private, planned_event
from securefl.errors import ConfigError, UnsupportedModelError

# Opacus's per-sample hooks make torch warn about full backward hooks on inputs
# that need no grad; the warning is attributed to the caller's line.
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook:UserWarning")


def loader(n: int = 16, batch_size: int = 8, scale: float = 1.0) -> DataLoader:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=gen) * scale
    y = torch.randint(0, 2, (n,), generator=gen)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def train_steps(pt, steps: int) -> None:
    done = 0
    while done < steps:
        for x, y in pt.loader:
            pt.optimizer.zero_grad()
            nn.functional.cross_entropy(pt.model(x), y).backward()
            pt.optimizer.step()
            done += 1
            if done == steps:
                return


def bn_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def test_batchnorm_is_refused_with_advice() -> None:
    model = bn_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(UnsupportedModelError, match="GroupNorm") as info:
        make_private(model, opt, loader(), noise_multiplier=1.0, max_grad_norm=1.0)
    assert "fix_model=True" in str(info.value)


def test_fix_model_swaps_batchnorm_and_rebuilds_the_optimizer() -> None:
    model = bn_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pt = make_private(model, opt, loader(), noise_multiplier=1.0, max_grad_norm=1.0, fix_model=True)
    kinds = {type(m) for m in pt.model.modules()}
    assert nn.GroupNorm in kinds and nn.BatchNorm1d not in kinds
    model_params = {id(p) for p in pt.model.parameters()}
    opt_params = [p for g in pt.optimizer.param_groups for p in g["params"]]
    assert {id(p) for p in opt_params} == model_params
    assert pt.optimizer.param_groups[0]["lr"] == 0.05
    assert pt.optimizer.param_groups[0]["momentum"] == 0.9
    before = [p.detach().clone() for p in pt.model.parameters()]
    train_steps(pt, 1)
    assert any(not torch.equal(a, b) for a, b in zip(before, pt.model.parameters(), strict=True))


def test_two_step_run_counts_steps_and_resets() -> None:
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pt = make_private(model, opt, loader(), noise_multiplier=1.0, max_grad_norm=1.0)
    assert pt.sample_rate == 0.5  # 1 / len(loader): 16 records, batches of 8
    train_steps(pt, 2)
    assert pt.steps_taken() == 2
    assert pt.actual_event() == DPEvent(
        noise_multiplier=1.0, sample_rate=0.5, steps=2, max_grad_norm=1.0, secure_rng=True
    )
    pt.reset_steps()
    assert pt.steps_taken() == 0
    train_steps(pt, 1)
    assert pt.steps_taken() == 1


def test_per_sample_clipping_bounds_the_update() -> None:
    # Every record is the same huge input, so every per-sample gradient is the
    # same vector of norm >> C. With clipping, the gradient Opacus hands to SGD
    # is |B| * C / E[|B|] in norm (noise negligible); without it, far larger.
    clip = 0.5
    x = torch.full((16, 4), 1000.0)
    y = torch.zeros(16, dtype=torch.long)
    data = DataLoader(TensorDataset(x, y), batch_size=8)
    model = nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, 1.0]]))
    raw = nn.functional.cross_entropy(model(x[:1]), y[:1])
    raw_norm = torch.cat([g.flatten() for g in torch.autograd.grad(raw, list(model.parameters()))])
    assert raw_norm.norm() > 100 * clip  # the property below can fail

    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    pt = make_private(model, opt, data, noise_multiplier=1e-9, max_grad_norm=clip)
    expected_batch = 16 * pt.sample_rate
    for xb, yb in pt.loader:
        if len(xb) == 0:
            continue
        pt.optimizer.zero_grad()
        nn.functional.cross_entropy(pt.model(xb), yb).backward()
        pt.optimizer.step()
        grad = torch.cat([p.grad.flatten() for p in pt.model.parameters()])
        assert grad.norm().item() == pytest.approx(clip * len(xb) / expected_batch, rel=1e-4)
        break
    else:
        pytest.fail("every Poisson batch was empty")


def test_global_torch_seed_does_not_fix_the_noise() -> None:
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = nn.Linear(4, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        pt = make_private(model, opt, loader(), noise_multiplier=1.0, max_grad_norm=1.0)
        torch.manual_seed(0)
        train_steps(pt, 1)
        results.append(torch.cat([p.detach().flatten() for p in pt.model.parameters()]))
    assert not torch.equal(results[0], results[1])


@pytest.mark.parametrize(("sigma", "clip"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0)])
def test_non_private_settings_are_refused(sigma: float, clip: float) -> None:
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError):
        make_private(model, opt, loader(), noise_multiplier=sigma, max_grad_norm=clip)


def test_planned_event_counts_expected_steps() -> None:
    event = planned_event(
        noise_multiplier=1.2, sample_rate=0.01, epochs=3, max_grad_norm=1.0, secure_rng=False
    )
    assert event.steps == 300 and event.sample_rate == 0.01 and event.kind == "dpsgd"
    assert (
        planned_event(
            noise_multiplier=1.2, sample_rate=0.3, epochs=2, max_grad_norm=1.0, secure_rng=False
        ).steps
        == 6
    )
    with pytest.raises(ConfigError, match="epochs"):
        planned_event(
            noise_multiplier=1.2, sample_rate=0.3, epochs=0, max_grad_norm=1.0, secure_rng=False
        )


@pytest.mark.filterwarnings("ignore:Full backward hook:UserWarning")
def test_a_step_on_the_unwrapped_optimizer_is_not_counted_as_private() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    data = TensorDataset(torch.randn(16, 3), torch.randint(0, 2, (16,)))
    private = make_private(
        model, sgd, DataLoader(data, batch_size=4), noise_multiplier=1.0, max_grad_norm=1.0
    )
    x, y = next(b for _ in range(20) for b in private.loader if len(b[1]))  # a non-empty batch
    private.optimizer.zero_grad()
    nn.functional.cross_entropy(private.model(x), y).backward()
    sgd.step()  # the user's own optimizer: no clipping, no noise
    assert private.steps_taken() == 0
    private.optimizer.step()
    assert private.steps_taken() == 1
