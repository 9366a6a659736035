"""FedAdam: an adaptive server optimizer (Reddi et al., ICLR 2021).

The server treats the averaged update as a pseudo-gradient and applies Adam
to it: m ← β₁m + (1−β₁)Δ̄, v ← β₂v + (1−β₂)Δ̄², θ ← θ + η·m/(√v + τ).
Per-coordinate step sizes make training robust to features of different
scales and to the noise DP-SGD adds, which is why ``simulate`` uses it by
default. It squares the aggregate, so it cannot run on ciphertexts
(``linear = False``); it is deterministic, so ``he`` mode runs it where the
aggregate is in the clear: at every site, after decryption.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from securefl.errors import ConfigError, DataError
from securefl.strategy.base import Strategy

__all__ = ["FedAdam"]


class FedAdam(Strategy):
    """Adam on the server over the weighted mean update."""

    name = "fedadam"
    linear = False

    def __init__(
        self, *, server_lr: float = 0.1, beta1: float = 0.9, beta2: float = 0.99, tau: float = 0.01
    ) -> None:
        if not server_lr > 0 or not 0 <= beta1 < 1 or not 0 <= beta2 < 1 or not tau > 0:
            raise ConfigError("FedAdam needs server_lr > 0, β1 and β2 in [0, 1), and τ > 0")
        self.server_lr, self.beta1, self.beta2, self.tau = server_lr, beta1, beta2, tau
        self._m: npt.NDArray[np.float64] | None = None
        self._v: npt.NDArray[np.float64] | None = None

    def apply(  # type: ignore[override]
        self,
        params: npt.NDArray[np.float64],
        mean_update: npt.NDArray[np.float64],
        round_number: int,
    ) -> npt.NDArray[np.float64]:
        update = np.asarray(mean_update, dtype=np.float64)
        if self._m is None or self._v is None:
            self._m = np.zeros_like(update)
            self._v = np.full_like(update, self.tau**2)
        self._m = self.beta1 * self._m + (1 - self.beta1) * update
        self._v = self.beta2 * self._v + (1 - self.beta2) * update**2
        step: npt.NDArray[np.float64] = self.server_lr * self._m / (np.sqrt(self._v) + self.tau)
        return np.asarray(params, dtype=np.float64) + step

    def state_dict(self) -> dict[str, npt.NDArray[np.float64]]:
        if self._m is None or self._v is None:
            return {}
        return {"m": self._m.copy(), "v": self._v.copy()}

    def load_state(self, state: dict[str, npt.NDArray[np.float64]]) -> None:
        if not state:
            self._m = self._v = None
            return
        if set(state) != {"m", "v"} or state["m"].shape != state["v"].shape:
            raise DataError(f"FedAdam state holds 'm' and 'v' of one shape, got {sorted(state)}")
        self._m = np.asarray(state["m"], dtype=np.float64).copy()
        self._v = np.asarray(state["v"], dtype=np.float64).copy()
