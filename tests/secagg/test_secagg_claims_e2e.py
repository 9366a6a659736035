"""A whole simulated mask federation: no site's quantized input reaches the server unmasked.

``tests/e2e/test_server_view_e2e.py`` looks for each update's float32 and
float64 bytes in what the server receives. A mask site sends ring elements,
not floats, so a round that sent its quantized input with no mask at all
(which the server dequantizes into the update by one multiplication) passed
that test. Here the ring vector each site hands to masking is recorded and
compared, coordinate by coordinate, with the masked input the server got.
"""

import numpy as np
import pytest

from securefl.config import DPConfig, FederationConfig, RoundConfig, StrategyConfig, TrainConfig
from securefl.data import breast_cancer_federation
from securefl.secagg import MaskSite
from securefl.secagg import _messages as m
from securefl.simulation import federation as federation_module
from securefl.simulation import run_simulation
from securefl.wire import SERVER, Envelope, unpack

pytestmark = pytest.mark.slow


def test_no_quantized_input_appears_in_what_the_server_receives(monkeypatch):
    ring_inputs: dict[str, np.ndarray] = {}
    original_advertise = MaskSite._advertise

    def recording_advertise(self, x):
        ring_inputs[self._me] = np.array(x, dtype=np.uint32, copy=True)  # masked in place later
        return original_advertise(self, x)

    monkeypatch.setattr(MaskSite, "_advertise", recording_advertise)
    received: list[bytes] = []
    original_init = federation_module.LocalFederation.__init__

    def tapping_init(self, **kwargs):
        original_init(self, **kwargs)
        self.hub.tap(SERVER, received.append)

    monkeypatch.setattr(federation_module.LocalFederation, "__init__", tapping_init)
    result = run_simulation(
        breast_cancer_federation(seed=3),
        FederationConfig(
            secure="mask",
            dp=DPConfig(epsilon=1.0, batch_size=32, max_grad_norm=0.5),
            train=TrainConfig(learning_rate=1.0),
            rounds=RoundConfig(max_rounds=1, stage_timeout_seconds=60),
            strategy=StrategyConfig(name="fedavg"),
        ),
    )
    assert [h["status"] for h in result.history] == ["aggregated"]
    assert len(ring_inputs) == 3 and received
    masked = {}
    for raw in received:
        env = Envelope.from_bytes(raw)
        if env.stage == m.MASKED_INPUT:
            body = unpack(env.payload)
            masked[env.sender] = m.unpack_ring(body["y"], body["n"], body["bits"])
    assert set(masked) == set(ring_inputs)
    for site, y in masked.items():
        x = ring_inputs[site]
        assert y.shape == x.shape
        hits = int(np.sum(y == x))
        # by chance about size / 2**bits coordinates coincide; unmasked, every one would
        assert hits <= 10 + x.size // 100, f"{site}: {hits} of {x.size} values sent unmasked"
