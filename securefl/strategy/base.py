"""The strategy seam: how the server turns an aggregate into the next model.

A strategy is handed ``(global params, Σ w·Δ / Σ w, round)`` and nothing
else: the aggregator has already hidden every single site's update, so a
strategy *cannot* look at one even by mistake. Strategies written only with
``+`` and scalar ``*`` could also run on ciphertexts (``linear = True``). The
``he`` mode needs only determinism (``deterministic = True``): its server
never runs the strategy; every site decrypts the aggregates and replays it
on the same numbers, so every site must reach the same model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from securefl.errors import DataError

__all__ = ["Strategy", "VectorLike"]

VectorLike = TypeVar("VectorLike")


class Strategy(ABC):
    """Server-side update rule, plus the per-round config it sends to sites."""

    name: ClassVar[str]
    #: True when ``apply`` only adds vectors and multiplies by public scalars, so
    #: sites can replay it on decrypted aggregates (``he`` mode refuses the rest).
    linear: ClassVar[bool] = True
    #: True when ``apply`` is a pure function of its inputs and earlier calls (no
    #: randomness), so that every ``he`` site replaying it reaches the same model.
    deterministic: ClassVar[bool] = True

    def round_config(self, round_number: int) -> dict[str, Any]:
        """Settings sent to every site with the round (e.g. FedProx's μ)."""
        return {}

    def state_dict(self) -> dict[str, npt.NDArray[np.float64]]:
        """What the strategy carries from round to round (momenta), for a server checkpoint.

        A restarted server that lost this would move the model by a different
        rule than the one it announced; empty for a memoryless strategy.
        """
        return {}

    def load_state(self, state: dict[str, npt.NDArray[np.float64]]) -> None:
        """Take back what :meth:`state_dict` gave (refuses state of another strategy)."""
        if state:
            raise DataError(f"strategy {self.name!r} keeps no state, got {sorted(state)}")

    @abstractmethod
    def apply(self, params: VectorLike, mean_update: VectorLike, round_number: int) -> VectorLike:
        """The next global parameters from the current ones and the average update."""
