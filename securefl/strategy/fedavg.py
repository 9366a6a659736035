"""FedAvg, FedAvgM (server momentum) and FedProx.

FedAvg (McMahan et al. 2017) moves the model by the example-weighted mean
update; ``server_lr`` scales that step. FedAvgM (Hsu et al. 2019) keeps a
momentum buffer on the server, which helps when sites' data differ. FedProx
(Li et al. 2020) is FedAvg on the server plus a proximal pull at each site;
under DP-SGD that pull is applied after each private optimizer step (it uses
only the public global model, so it is post-processing and costs no privacy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from securefl.config import StrategyConfig
from securefl.errors import ConfigError, DataError
from securefl.strategy.base import Strategy, VectorLike

__all__ = ["FedAvg", "FedAvgM", "FedProx", "make_strategy"]


class FedAvg(Strategy):
    """θ ← θ + η · mean update."""

    name = "fedavg"

    def __init__(self, *, server_lr: float = 1.0) -> None:
        if server_lr <= 0:
            raise ConfigError("server_lr must be > 0")
        self.server_lr = server_lr

    def apply(self, params: VectorLike, mean_update: VectorLike, round_number: int) -> VectorLike:
        step: Any = mean_update
        if self.server_lr != 1.0:
            step = step * self.server_lr
        return params + step  # type: ignore[no-any-return]


class FedAvgM(Strategy):
    """m ← β·m + mean update;  θ ← θ + η·m."""

    name = "fedavgm"

    def __init__(self, *, server_lr: float = 1.0, momentum: float = 0.9) -> None:
        if server_lr <= 0 or not 0 <= momentum < 1:
            raise ConfigError("FedAvgM needs server_lr > 0 and momentum in [0, 1)")
        self.server_lr = server_lr
        self.momentum = momentum
        self._buffer: Any = None

    def apply(self, params: VectorLike, mean_update: VectorLike, round_number: int) -> VectorLike:
        if self._buffer is None:
            self._buffer = mean_update
        else:
            self._buffer = self._buffer * self.momentum + mean_update
        return params + self._buffer * self.server_lr  # type: ignore[no-any-return]

    def state_dict(self) -> dict[str, npt.NDArray[np.float64]]:
        if self._buffer is None:
            return {}
        return {"buffer": np.asarray(self._buffer, dtype=np.float64).copy()}

    def load_state(self, state: dict[str, npt.NDArray[np.float64]]) -> None:
        if set(state) - {"buffer"}:
            raise DataError(f"FedAvgM state holds only 'buffer', got {sorted(state)}")
        buffer = state.get("buffer")
        self._buffer = None if buffer is None else np.asarray(buffer, dtype=np.float64).copy()


class FedProx(FedAvg):
    """FedAvg on the server; sites add a proximal pull of weight μ."""

    name = "fedprox"

    def __init__(self, *, server_lr: float = 1.0, proximal_mu: float = 0.01) -> None:
        super().__init__(server_lr=server_lr)
        if proximal_mu < 0:
            raise ConfigError("proximal_mu must be ≥ 0")
        self.proximal_mu = proximal_mu

    def round_config(self, round_number: int) -> dict[str, Any]:
        return {"proximal_mu": self.proximal_mu}


def make_strategy(config: StrategyConfig) -> Strategy:
    """Build the strategy a :class:`StrategyConfig` names."""
    lr = config.effective_server_lr
    if config.name == "fedavg":
        return FedAvg(server_lr=lr)
    if config.name == "fedavgm":
        return FedAvgM(server_lr=lr, momentum=config.momentum)
    if config.name == "fedprox":
        return FedProx(server_lr=lr, proximal_mu=config.proximal_mu)
    if config.name == "fedadam":
        from securefl.strategy.adaptive import FedAdam

        return FedAdam(server_lr=lr, beta1=config.momentum, beta2=config.beta2, tau=config.tau)
    raise ConfigError(f"unknown strategy {config.name!r}")
