"""make_private: Opacus's own accountant is charged for every private step, in both RNG modes,
and the one torch warning it silences is that one only.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.dp import make_private

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook:UserWarning")


def _loader() -> DataLoader[tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(32, 4, generator=gen)
    y = torch.randint(0, 2, (32,), generator=gen)
    return DataLoader(TensorDataset(x, y), batch_size=8)


def _steps(pt: Any, n: int) -> None:
    done = 0
    while done < n:
        for x, y in pt.loader:
            if not len(y):
                continue
            pt.optimizer.zero_grad()
            nn.functional.cross_entropy(pt.model(x), y).backward()  # type: ignore[no-untyped-call]
            pt.optimizer.step()
            done += 1
            if done == n:
                return


@pytest.mark.parametrize("secure_rng", [True, False])
def test_opacus_accountant_is_charged_for_each_counted_private_step(secure_rng: bool) -> None:
    model = nn.Linear(4, 2)
    pt = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        _loader(),
        noise_multiplier=1.2,
        max_grad_norm=1.0,
        secure_rng=secure_rng,
    )
    _steps(pt, 3)
    assert pt.steps_taken() == 3
    history = pt.engine.accountant.history
    assert sum(steps for _, _, steps in history) == 3
    assert all(sigma == 1.2 and q == pt.sample_rate for sigma, q, _ in history)


def test_only_torchs_backward_hook_warning_is_silenced() -> None:
    model = nn.Linear(4, 2)
    make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        _loader(),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
    )
    # the first filter that matches decides (the warnings module's own lookup)
    text = "a site's own warning about its data"
    action = next(
        (
            act
            for act, message, category, module, _ in warnings.filters
            if issubclass(UserWarning, category)
            and (message is None or message.match(text))
            and (module is None or module.match(__name__))
        ),
        "default",
    )
    assert action != "ignore"
    hook = "Full backward hook is firing when gradients are computed with respect to module"
    assert any(
        act == "ignore" and message is not None and message.match(hook)
        for act, message, category, _, _ in warnings.filters
        if issubclass(UserWarning, category)
    )
