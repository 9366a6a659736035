"""The global model in ``he`` mode: the server holds it, but only encrypted.

The server cannot divide a BFV ciphertext by Σw, nor run a strategy on
numbers it cannot read. So it holds the public initial parameters θ₀ (a
random initialisation, not patient data) and the encrypted aggregate of
every round with its Σw. Sites decrypt the aggregates and replay the
strategy (any deterministic one, FedAdam included: its squares are taken on
the decrypted mean at the site) to obtain θ_r; a site that joins late replays
from θ₀, so nobody falls out of step.

Each site is sent only the aggregates it has not acknowledged (answering in
a round acknowledges that round's start; a hello starts over from θ₀), so the
downlink grows with the rounds, not with their square. The site keeps a hash
chain over θ₀, the strategy and every aggregate it applied: a payload that
starts past what the site holds (a gap), or whose overlap with it differs (a
rewrite or a swap), is refused. The chain's head goes into the round digest
every upload signs, so a server that hands two sites different histories (a
fork) is caught when either opens an aggregate that sums both.

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
from securefl.runtime import messages as m
from securefl.runtime.global_model import GlobalModel
from securefl.strategy.base import Strategy
from securefl.strategy.fedavg import make_strategy
from securefl.wire import array_from_wire, array_to_wire, pack, unpack

__all__ = ["EncryptedAggregatesModel", "EncryptedModelDecoder"]


class EncryptedAggregatesModel(GlobalModel):
    """Server side: θ₀ in the clear plus one ciphertext aggregate per round.

    What a hello costs. A hello names what the site holds (:class:`~securefl.
    runtime.messages.Hello`); the server keeps the chain heads of its own
    history, so checking a claim is one comparison, and a site whose claim
    matches is sent only the aggregates past it (nothing is owed if it holds
    them all). A claim that does not match, or none (a site that lost its
    state), starts over from θ₀. In a run, what a hello changes is sent with
    the next round start, once per round whatever the number of hellos.

    After the last round a hello is answered at once, so there the whole
    history could be asked for again and again by a roster site, each small
    request costing the server an encoding (and the transport a hash and a
    signature) of up to the message limit. So a site is owed a new copy only
    if the last copy sent to it, which it has not acknowledged, does not
    already reach the current model from what it holds: the transport keeps
    a message until the site polls past it, so an honest site that restarted
    (its state lost, its poll starting afresh) reads that copy again. When a
    new copy is owed while an earlier one is still unacknowledged, it is the
    whole history, which every later claim is covered by: per site and model
    version the server encodes at most one suffix and one whole history.
    A cheaper alternative, caching one encoding and handing out the same
    bytes, would still make the transport hash and queue it per request.
    """

    def __init__(self, theta0: npt.NDArray[np.float32], strategy: StrategyConfig) -> None:
        if not make_strategy(strategy).deterministic:
            raise ConfigError(
                f"strategy {strategy.name!r} is not deterministic, so the sites replaying it "
                "in he mode would drift apart; use fedavg, fedavgm, fedprox or fedadam"
            )
        self._theta0 = np.asarray(theta0, dtype=np.float32).copy()
        self._strategy = strategy
        self._aggregates: list[dict[str, Any]] = []
        #: the chain head after i aggregates, as every site that applied them holds it
        self._heads = [_chain_start(self._theta0, _strategy_fields(strategy))]
        self._sent: dict[str, int] = {}  # aggregates in the last payload sent to a site
        self._acked: dict[str, int] = {}  # aggregates a site has acknowledged holding
        #: the last copy sent to a site and not acknowledged: (first aggregate, aggregates)
        self._unacked: dict[str, tuple[int, int]] = {}

    def payload(self) -> bytes:
        """The whole history: θ₀ and every aggregate (what a site that just joined gets)."""
        return self._encode(0)

    def payload_for(self, site: str) -> bytes:
        start = self._acked.get(site, 0)
        self._sent[site] = len(self._aggregates)
        self._unacked[site] = (start, len(self._aggregates))
        return self._encode(start)

    def acknowledge(self, site: str) -> None:
        if site in self._sent:
            self._acked[site] = self._sent[site]
            self._unacked.pop(site, None)

    def rejoin(self, site: str, hello: bytes) -> bool:
        """``site`` said hello with ``hello`` (a :class:`~securefl.runtime.messages.Hello`).

        From now on it is sent what lies past its claim if the claim matches
        this history, else the whole history. Returns whether it is owed a copy
        now: False when the unacknowledged copy last sent to it already reaches
        the current model from what it holds. Raises ``WireError`` on a
        malformed hello.
        """
        claim = m.decode(hello, m.Hello)
        held = claim.aggregates
        if not (held < len(self._heads) and claim.head == self._heads[held]):
            held = 0  # none, or not this history: start over from θ₀
        self._sent.pop(site, None)  # a straggler of the site's last life acknowledges nothing
        self._acked[site] = held
        last = self._unacked.get(site)
        if last is None or last[1] != len(self._aggregates):
            return True  # no copy of this model version is on its way to the site
        if last[0] <= held:
            return False
        self._acked[site] = 0  # a second copy of this version: the whole, covering any claim
        return True

    @property
    def aggregates(self) -> list[tuple[bytes, float]]:
        """Every round's encrypted sum and Σw, in order (what a server state folder keeps)."""
        return [(a["sum"], float(a["weight"])) for a in self._aggregates]

    def acknowledged(self) -> dict[str, int]:
        """How many aggregates each site has acknowledged holding."""
        return dict(self._acked)

    def restore(self, aggregates: list[tuple[bytes, float]], acknowledged: dict[str, int]) -> None:
        """Take back a saved history (a restarted server): the chain every site holds goes on.

        A site acknowledged at most the aggregates saved; anything else is refused,
        since the site would then be sent a history with a gap.
        """
        if self._aggregates:
            raise ConfigError("only an empty history can be restored")
        if any(not 0 <= n <= len(aggregates) for n in acknowledged.values()):
            raise ConfigError("a site acknowledged more aggregates than the history holds")
        for s, w in aggregates:
            self._append({"sum": s, "weight": w})
        self._acked = dict(acknowledged)

    def _encode(self, start: int) -> bytes:
        return pack(
            {
                "theta0": array_to_wire(self._theta0) if start == 0 else None,
                "strategy": _strategy_fields(self._strategy),
                "start": start,
                "aggregates": self._aggregates[start:],
            }
        )

    def apply(self, result: AggregateResult, strategy: Strategy, round_number: int) -> None:
        if not isinstance(result.encrypted_sum, bytes):
            raise ConfigError("he mode expects an encrypted aggregate")
        self._append({"sum": result.encrypted_sum, "weight": result.total_weight})

    def _append(self, aggregate: dict[str, Any]) -> None:
        self._heads.append(_chain_next(self._heads[-1], aggregate))
        self._aggregates.append(aggregate)


def _strategy_fields(config: StrategyConfig) -> dict[str, Any]:
    """What the payload announces of a strategy (and a site requires to be its own)."""
    return {
        "name": config.name,
        "server_lr": config.effective_server_lr,
        "momentum": config.momentum,
        "beta2": config.beta2,
        "tau": config.tau,
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
        #: hash chain over the history applied: ``_chain[i]`` is the head after i aggregates
        self._chain: list[bytes] = [b""]
        self._theta: npt.NDArray[np.float64] | None = None
        self._strategy: Strategy | None = None

    def hello(self) -> bytes:
        """What this site holds, for its hello: the server then sends only what lies past it."""
        if self._strategy is None:
            return b""
        return m.Hello(aggregates=len(self._rounds), head=self._chain[-1]).to_bytes()

    def history_digest(self) -> bytes:
        """The head of the hash chain over θ₀, the strategy and every aggregate applied.

        Sites bind it into their signed uploads (through the round digest), so
        a server that sent two sites different histories is caught when they
        open an aggregate holding both uploads.
        """
        return self._chain[-1]

    def __call__(self, payload: bytes, dimension: int) -> npt.NDArray[np.float32]:
        from securefl.he import open_aggregate

        start, aggregates = self._join(unpack(payload), dimension)
        assert self._theta is not None and self._strategy is not None
        chain = self._chain[start]
        for i, agg in enumerate(aggregates, start=start):
            chain = _chain_next(chain, agg)
            if i < len(self._rounds):  # already applied: it must be the very same aggregate
                if chain != self._chain[i + 1]:
                    raise IntegrityError("the server rewrote the federation's model history")
                continue
            self._apply(agg, i, dimension, open_aggregate)
            self._chain.append(chain)
        if start + len(aggregates) < len(self._rounds):
            raise IntegrityError("the server shortened the federation's model history")
        return self._theta.astype(np.float32)

    def _join(self, obj: Any, dimension: int) -> tuple[int, list[dict[str, Any]]]:
        """Check a payload's shape and that it continues this site's history, not past it."""
        if not isinstance(obj, dict) or set(obj) != {"theta0", "strategy", "start", "aggregates"}:
            raise WireError("malformed encrypted model")
        start = obj["start"]
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise WireError("malformed encrypted model start")
        aggregates = obj["aggregates"]
        if not isinstance(aggregates, list) or not all(_is_aggregate(a) for a in aggregates):
            raise WireError("malformed encrypted model aggregates")
        if start == 0:
            theta0 = array_from_wire(obj["theta0"], expected_len=dimension)
            if theta0.dtype != np.dtype("<f4"):
                # the server holds θ₀ as float32; the chain hashes its bytes, and one
                # byte string read as int64 at one site and float64 at another would
                # give two models under one head (a fork no later aggregate reveals)
                raise WireError(f"the initial model must be float32, not {theta0.dtype.str}")
            head = _chain_start(theta0, obj["strategy"])
            if self._strategy is None:
                self._restart(theta0, head, obj["strategy"])
            elif head != self._chain[0]:
                raise IntegrityError("the server rewrote the federation's model history")
        elif obj["theta0"] is not None:
            raise WireError("malformed encrypted model: θ₀ belongs only to a whole history")
        elif self._strategy is None or start > len(self._rounds):
            # a site must hold every aggregate before the first one it is sent
            raise IntegrityError(
                f"the server skipped part of the model history (sent from aggregate {start}, "
                f"this site holds {len(self._rounds)})"
            )
        elif obj["strategy"] != self._own_strategy:
            raise ProtocolError("the server changed the federation's strategy mid-run")
        return start, aggregates

    def _apply(self, agg: dict[str, Any], i: int, dimension: int, open_aggregate: Any) -> None:
        """Open aggregate ``i`` with every check and replay the strategy on its mean."""
        assert self._theta is not None and self._strategy is not None
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

    def _restart(self, theta0: npt.NDArray[Any], head: bytes, strategy: Any) -> None:
        if strategy != self._own_strategy:
            raise ProtocolError(
                f"the server announces strategy {strategy!r}, but this site's configuration "
                f"says {self._own_strategy!r}; refusing the model"
            )
        self._strategy = make_strategy(self._config)
        self._theta = theta0.astype(np.float64)
        self._chain = [head]
        self._rounds = []


_DOMAIN = b"securefl/he-model-history/v1"


def _chain_start(theta0: npt.NDArray[Any], strategy: Any) -> bytes:
    """h₀ = SHA-256(domain ‖ θ₀ as little-endian float32 ‖ strategy): what every history grows from.

    The bytes are fixed to one type so that equal heads mean equal models.
    """
    canonical = np.asarray(theta0, dtype="<f4").tobytes()
    return hashlib.sha256(_DOMAIN + canonical + pack(strategy)).digest()


def _chain_next(head: bytes, agg: dict[str, Any]) -> bytes:
    """hᵢ₊₁ = SHA-256(hᵢ ‖ SHA-256(sum, weight)): a gap, swap or fork changes later heads."""
    entry = hashlib.sha256(pack([agg["sum"], float(agg["weight"])])).digest()
    return hashlib.sha256(head + entry).digest()


def _is_aggregate(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and set(entry) == {"sum", "weight"}
        and isinstance(entry["sum"], bytes)
        and isinstance(entry["weight"], (int, float))
        and not isinstance(entry["weight"], bool)
        and 0 < entry["weight"] < float("inf")
    )
