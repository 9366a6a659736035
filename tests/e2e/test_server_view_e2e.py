"""A whole simulated federation, mask or he: what reaches the server hides every update."""

import numpy as np
import pytest

from securefl.config import DPConfig, FederationConfig, RoundConfig, StrategyConfig, TrainConfig
from securefl.data import breast_cancer_federation
from securefl.he import HESite
from securefl.secagg import MaskSite
from securefl.simulation import federation as federation_module
from securefl.simulation import run_simulation
from securefl.wire import SERVER

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("secure", "site_half", "strategy"),
    [("mask", MaskSite, "fedadam"), ("he", HESite, "fedavgm")],
)
def test_no_site_update_appears_in_what_the_server_receives(
    monkeypatch, secure, site_half, strategy
):
    updates: list[np.ndarray] = []
    original_submit = site_half.submit

    def recording_submit(self, vector, weight):
        updates.append(np.asarray(vector, dtype=np.float32).copy())
        return original_submit(self, vector, weight)

    monkeypatch.setattr(site_half, "submit", recording_submit)
    received: list[bytes] = []
    original_init = federation_module.LocalFederation.__init__

    def tapping_init(self, **kwargs):
        original_init(self, **kwargs)
        self.hub.tap(SERVER, received.append)

    monkeypatch.setattr(federation_module.LocalFederation, "__init__", tapping_init)
    result = run_simulation(
        breast_cancer_federation(seed=3),
        FederationConfig(
            secure=secure,
            dp=DPConfig(epsilon=1.0, batch_size=32, max_grad_norm=0.5),
            train=TrainConfig(learning_rate=1.0),
            rounds=RoundConfig(max_rounds=2, stage_timeout_seconds=60),
            strategy=StrategyConfig(name=strategy),
        ),
    )
    assert [h["status"] for h in result.history] == ["aggregated", "aggregated"]
    assert len(updates) == 6 and received
    seen = b"".join(received)
    for update in updates:
        # neither the whole update nor any 4-value window of it travels in the clear
        assert update.tobytes() not in seen
        for start in range(0, update.size - 4, 7):
            assert update[start : start + 4].tobytes() not in seen
        assert update.astype(np.float64).tobytes()[:32] not in seen
