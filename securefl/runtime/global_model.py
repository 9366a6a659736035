"""How the server holds the global model between rounds, per mode.

In ``plain`` and ``mask`` mode the server holds plaintext parameters and the
strategy updates them with the (unmasked) average. In ``he`` mode the server
holds only ciphertexts; that holder lives with the HE code and implements
the same two methods, so the round driver never knows which it has.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from securefl.aggregation.base import AggregateResult
from securefl.errors import AbortError
from securefl.strategy.base import Strategy
from securefl.wire import array_from_wire, array_to_wire, pack, unpack

__all__ = ["GlobalModel", "ModelDecoder", "PlainGlobalModel", "decode_plain_model"]

#: How a site turns the model bytes of a round start into a flat parameter vector.
ModelDecoder = Callable[[bytes, int], npt.NDArray[np.float32]]


class GlobalModel(ABC):
    """Server-side holder of the global parameters."""

    @abstractmethod
    def payload(self) -> bytes:
        """The bytes sites receive at round start (and at the end)."""

    @abstractmethod
    def apply(self, result: AggregateResult, strategy: Strategy, round_number: int) -> None:
        """Move to the next global model with the round's aggregate."""

    def plaintext(self) -> npt.NDArray[np.float32] | None:
        """The parameters in the clear, if the server may know them (else ``None``)."""
        return None

    def payload_for(self, site: str) -> bytes:
        """The bytes ``site`` receives: by default the whole model, as :meth:`payload`.

        A holder whose model is a growing history sends only what ``site``
        has not acknowledged (see :meth:`acknowledge`).
        """
        return self.payload()

    def acknowledge(self, site: str) -> None:
        """``site`` answered in the round it was last sent a payload: it holds that payload."""
        return None

    def rejoin(self, site: str, hello: bytes) -> bool:
        """``site`` said hello with payload ``hello``; returns whether it is owed a copy now.

        By default the site holds nothing it can name: it is sent the whole
        model. A holder whose model is a growing history reads what the site
        says it holds and may answer that a copy already on its way suffices.
        """
        return True


class PlainGlobalModel(GlobalModel):
    """Plaintext parameters, as in ``plain`` and ``mask`` mode."""

    def __init__(self, params: npt.NDArray[np.float32]) -> None:
        self._params = np.asarray(params, dtype=np.float32).copy()

    def payload(self) -> bytes:
        return pack(array_to_wire(self._params))

    def apply(self, result: AggregateResult, strategy: Strategy, round_number: int) -> None:
        # mean() refuses a zero or non-finite total weight; a strategy could still
        # overflow, and a NaN model must never reach the sites: abandon the round.
        new = np.asarray(
            strategy.apply(self._params.astype(np.float64), result.mean(), round_number),
            dtype=np.float64,
        )
        with np.errstate(over="ignore"):  # an overflow to inf is what we test for
            narrowed = new.astype(np.float32)
        if new.shape != self._params.shape or not np.all(np.isfinite(narrowed)):
            raise AbortError(
                f"the strategy {strategy.name!r} produced a non-finite model in round "
                f"{round_number}; the round is abandoned and the model kept"
            )
        self._params = narrowed

    def plaintext(self) -> npt.NDArray[np.float32]:
        return self._params.copy()


def decode_plain_model(payload: bytes, dimension: int) -> npt.NDArray[np.float32]:
    """Site-side inverse of :meth:`PlainGlobalModel.payload`."""
    return array_from_wire(unpack(payload), expected_len=dimension).astype(np.float32)
