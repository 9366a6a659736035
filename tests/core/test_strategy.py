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
