"""The global model in ``he`` mode: the server holds it, but only encrypted.

The server cannot divide a BFV ciphertext by Σw, nor run a strategy on
numbers it cannot read. So it holds the public initial parameters θ₀ (a
random initialisation, not patient data) and the encrypted aggregate of
every round with its Σw. Sites decrypt the aggregates and replay the
strategy (FedAvg or FedAvgM: both are linear and deterministic) to obtain
θ_r; a site that joins late replays from θ₀, so nobody falls out of step.
A site decrypts only aggregates it has not seen (they are cached by prefix).

Each aggregate is opened with :func:`securefl.he.open_aggregate`: every
signed header is rechecked against the roster, the announced weight must
equal the signed weights, rounds must increase, a round this site took part
in must list its own upload (the chunk digest it sent), and a sum that
honest clipped inputs cannot produce is refused; a refused aggregate is
never applied (the site stops with the error). That the sum is exactly the
listed uploads added is the server's word (``threat_models/he.md``).

Why the strategy, ``max_weight`` and ``min_sites`` come from the site's own
configuration: the step a site applies multiplies every bound the checks
give (a server announcing ``server_lr = 1e9`` would move the model 1e9
times the feasible mean), so the payload's strategy must equal the site's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from securefl.aggregation.base import AggregateResult
from securefl.config import StrategyConfig
from securefl.errors import ConfigError, IntegrityError, ProtocolError, WireError
from securefl.runtime.global_model import GlobalModel
from securefl.strategy.base import Strategy
from securefl.strategy.fedavg import make_strategy
from securefl.wire import array_from_wire, array_to_wire, pack, unpack

__all__ = ["EncryptedAggregatesModel", "EncryptedModelDecoder"]


class EncryptedAggregatesModel(GlobalModel):
    """Server side: θ₀ in the clear plus one ciphertext aggregate per round."""

    def __init__(self, theta0: npt.NDArray[np.float32], strategy: StrategyConfig) -> None:
        if not make_strategy(strategy).linear:
            raise ConfigError(
                f"strategy {strategy.name!r} needs the plaintext aggregate at the server, which "
                "he mode never reveals; use fedavg, fedavgm or fedprox, or secure='mask'"
            )
        self._theta0 = np.asarray(theta0, dtype=np.float32).copy()
        self._strategy = strategy
        self._aggregates: list[dict[str, Any]] = []

    def payload(self) -> bytes:
        return pack(
            {
                "theta0": array_to_wire(self._theta0),
                "strategy": _strategy_fields(self._strategy),
                "aggregates": self._aggregates,
            }
        )

    def apply(self, result: AggregateResult, strategy: Strategy, round_number: int) -> None:
        if not isinstance(result.encrypted_sum, bytes):
            raise ConfigError("he mode expects an encrypted aggregate")
        self._aggregates.append({"sum": result.encrypted_sum, "weight": result.total_weight})


def _strategy_fields(config: StrategyConfig) -> dict[str, Any]:
    """What the payload announces of a strategy (and a site requires to be its own)."""
    return {
        "name": config.name,
        "server_lr": config.effective_server_lr,
        "momentum": config.momentum,
    }


class EncryptedModelDecoder:
    """Site side: turns the server's payload into θ_r, decrypting only what is new."""

    def __init__(
        self,
        site_mode: Any,
        *,
        roster: Mapping[str, bytes],
        federation: str,
        strategy: StrategyConfig,
        min_sites: int,
    ) -> None:
        """``site_mode`` is the site's :class:`~securefl.he.HESiteMode` (its key, its
        ``max_weight`` and the rounds it took part in); ``strategy`` and
        ``min_sites`` are the site's own federation configuration."""
        from securefl.he import HESiteMode

        if not isinstance(site_mode, HESiteMode):
            raise ConfigError("EncryptedModelDecoder needs the site's HESiteMode")
        self._mode = site_mode
        self._roster = dict(roster)
        self._federation = federation
        self._own_strategy = _strategy_fields(strategy)
        self._config = strategy
        self._min_sites = min_sites
        self._rounds: list[int] = []
        self._digests: list[bytes] = []
        self._theta: npt.NDArray[np.float64] | None = None
        self._strategy: Strategy | None = None
        self._theta0_digest = b""

    def __call__(self, payload: bytes, dimension: int) -> npt.NDArray[np.float32]:
        from securefl.he import open_aggregate

        obj = unpack(payload)
        if not isinstance(obj, dict) or set(obj) != {"theta0", "strategy", "aggregates"}:
            raise WireError("malformed encrypted model")
        theta0 = array_from_wire(obj["theta0"], expected_len=dimension)
        aggregates = obj["aggregates"]
        if not isinstance(aggregates, list) or not all(_is_aggregate(a) for a in aggregates):
            raise WireError("malformed encrypted model aggregates")
        header = hashlib.sha256(theta0.tobytes() + pack(obj["strategy"])).digest()
        digests = [
            hashlib.sha256(pack([a["sum"], float(a["weight"])])).digest() for a in aggregates
        ]
        if self._strategy is None:
            self._restart(theta0, header, obj["strategy"])
        elif header != self._theta0_digest or digests[: len(self._digests)] != self._digests:
            # the history this site already replayed must never change or shrink
            raise IntegrityError("the server rewrote the federation's model history")
        assert self._theta is not None and self._strategy is not None
        for i in range(len(self._digests), len(aggregates)):
            agg = aggregates[i]
            opened = open_aggregate(
                self._mode.context,
                agg["sum"],
                dimension,
                roster=self._roster,
                federation=self._federation,
                max_weight=self._mode.max_weight,
                min_sites=self._min_sites,
                site=self._mode.site_id,
                took_part=self._mode.took_part,
            )
            if not np.isclose(opened.total_weight, float(agg["weight"]), rtol=1e-12, atol=0.0):
                raise IntegrityError("announced total weight differs from the signed weights")
            if self._rounds and opened.round <= self._rounds[-1]:
                raise IntegrityError("the server replayed an aggregate of an earlier round")
            self._theta = np.asarray(self._strategy.apply(self._theta, opened.mean(), i + 1))
            self._rounds.append(opened.round)
            self._digests.append(digests[i])
        return self._theta.astype(np.float32)

    def _restart(self, theta0: npt.NDArray[Any], digest0: bytes, strategy: Any) -> None:
        if strategy != self._own_strategy:
            raise ProtocolError(
                f"the server announces strategy {strategy!r}, but this site's configuration "
                f"says {self._own_strategy!r}; refusing the model"
            )
        self._strategy = make_strategy(self._config)
        self._theta = theta0.astype(np.float64)
        self._theta0_digest = digest0
        self._digests = []
        self._rounds = []


def _is_aggregate(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and set(entry) == {"sum", "weight"}
        and isinstance(entry["sum"], bytes)
        and isinstance(entry["weight"], (int, float))
        and not isinstance(entry["weight"], bool)
        and 0 < entry["weight"] < float("inf")
    )
