"""A server whose parameter spec and model agree with each other but not with the site's model.

The cheating server sends the spec of another model *and* a model of that
spec's size, so the model decodes. Only the site's comparison of the spec
with its own model stands between this round start and the ledger; without
it the site would reserve the round's privacy and only then fail to load the
weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.aggregation import PlainMode
from securefl.config import DPConfig, RoundConfig, TrainConfig
from securefl.errors import SecureFLError
from securefl.params import ParamSpec
from securefl.runtime import messages as m
from securefl.runtime.global_model import PlainGlobalModel
from securefl.runtime.site import Site
from securefl.transport import MemoryHub
from securefl.wire import SERVER, Envelope

N_EXAMPLES = 32


def test_a_consistent_spec_of_another_model_is_refused_before_the_ledger(tmp_path: Path) -> None:
    hub = MemoryHub()
    server = hub.connect(SERVER)
    site = Site(
        name="a",
        federation="f",
        transport=hub.connect("a"),
        mode=PlainMode(),
        dp=DPConfig(epsilon=5.0, noise_multiplier=1.0, batch_size=8),
        train=TrainConfig(),
        rounds=RoundConfig(max_rounds=3, min_sites=2, stage_timeout_seconds=5),
        state_dir=tmp_path,
        roster=("a", "b"),
    )
    model = nn.Sequential(nn.Linear(3, 2))
    data = TensorDataset(torch.randn(N_EXAMPLES, 3), torch.randint(0, 2, (N_EXAMPLES,)))
    model, _opt, _loader = site.privatize(
        model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(data, batch_size=8)
    )
    other = ParamSpec.from_state_dict(nn.Sequential(nn.Linear(4, 2)).state_dict())
    start = m.RoundStart(
        cohort=("a", "b"),
        model=PlainGlobalModel(np.zeros(other.size, dtype=np.float32)).payload(),
        spec=other.to_dict(),
        max_weight=100.0,
        min_sites=2,
        run="0f",
    ).to_bytes()
    server.send(
        Envelope(
            federation="f", round=1, stage=m.ROUND_START, sender=SERVER, receiver="a", payload=start
        )
    )
    with pytest.raises(Exception) as refused:  # the ledger is the property
        for rnd in site.rounds(model):
            rnd.submit(num_examples=N_EXAMPLES)
    assert site.ledger.history() == []  # nothing reserved, nothing charged
    assert site.ledger.spent() == 0
    assert isinstance(refused.value, SecureFLError)  # the project's one-line refusal
