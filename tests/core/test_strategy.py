import numpy as np
import pytest

from securefl.config import StrategyConfig
from securefl.errors import ConfigError
from securefl.strategy import FedAvg, FedAvgM, FedProx, make_strategy


def test_fedavg_moves_by_the_mean_update():
    theta = np.array([1.0, 2.0])
    assert np.allclose(FedAvg().apply(theta, np.array([0.5, -1.0]), 1), [1.5, 1.0])
    assert np.allclose(FedAvg(server_lr=0.5).apply(theta, np.array([0.5, -1.0]), 1), [1.25, 1.5])


def test_fedavgm_accumulates_momentum():
    s = FedAvgM(server_lr=1.0, momentum=0.5)
    theta = np.zeros(1)
    theta = s.apply(theta, np.ones(1), 1)  # m = 1
    theta = s.apply(theta, np.ones(1), 2)  # m = 1.5
    assert np.allclose(theta, [2.5])


def test_fedprox_sends_mu_to_sites():
    assert FedProx(proximal_mu=0.1).round_config(1) == {"proximal_mu": 0.1}


def test_factory_and_validation():
    assert isinstance(make_strategy(StrategyConfig(name="fedavgm")), FedAvgM)
    with pytest.raises(ConfigError):
        FedAvgM(momentum=1.0)


def test_fedadam_takes_per_coordinate_steps_of_about_server_lr():
    from securefl.strategy import FedAdam

    s = FedAdam(server_lr=0.1, beta1=0.0, beta2=0.0, tau=1e-9)
    theta = s.apply(np.zeros(2), np.array([1e-4, 50.0]), 1)
    # Adam normalises each coordinate: both move by ~server_lr whatever their scale
    assert np.allclose(theta, [0.1, 0.1], rtol=1e-3)


def test_he_accepts_every_deterministic_strategy_and_refuses_a_random_one(monkeypatch):
    """he sites replay the strategy on decrypted aggregates: determinism is what they need."""
    from securefl.runtime.encrypted_model import EncryptedAggregatesModel
    from securefl.strategy import FedAdam

    assert FedAdam.linear is False and FedAdam.deterministic is True
    for name in ("fedavg", "fedavgm", "fedprox", "fedadam"):
        EncryptedAggregatesModel(np.zeros(3, dtype=np.float32), StrategyConfig(name=name))
    monkeypatch.setattr(FedAdam, "deterministic", False)  # e.g. a server-side noise step
    with pytest.raises(ConfigError, match="not deterministic"):
        EncryptedAggregatesModel(np.zeros(3, dtype=np.float32), StrategyConfig(name="fedadam"))


def test_server_lr_default_depends_on_the_strategy():
    assert StrategyConfig(name="fedadam").effective_server_lr == 0.1
    assert StrategyConfig(name="fedavg").effective_server_lr == 1.0
    assert StrategyConfig(name="fedavg", server_lr=0.3).effective_server_lr == 0.3
