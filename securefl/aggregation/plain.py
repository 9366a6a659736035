"""The ``plain`` aggregator: sites send their weighted update in the clear.

It exists to give a baseline and to debug a federation; it hides nothing.
The server sees every site's update, so every use logs a warning and the CLI
says so in its output. It still enforces what every mode enforces: the
vector's length, finite values, a weight in (0, max_weight], and a minimum
number of survivors.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import numpy.typing as npt

from securefl.aggregation.base import (
    AggregateResult,
    AggregationMode,
    RoundContext,
    ServerAggregator,
    SiteAggregator,
)
from securefl.errors import AbortError, ProtocolError, WireError
from securefl.wire import SERVER, Envelope, array_from_wire, array_to_wire, pack, unpack

__all__ = ["PLAIN_WARNING", "PlainMode"]

log = logging.getLogger(__name__)

PLAIN_WARNING = (
    "secure='plain': the server sees every site's update in the clear. "
    "Use 'mask' or 'he' for real deployments."
)
_STAGE = "plain/update"


def _check_update(vector: npt.NDArray[np.float32], weight: float, ctx: RoundContext) -> None:
    if vector.ndim != 1 or vector.shape[0] != ctx.dimension:
        raise ProtocolError(f"update has {vector.size} values, expected {ctx.dimension}")
    if not np.all(np.isfinite(vector)):
        raise ProtocolError("update contains NaN or infinite values")
    if not 0 < weight <= ctx.max_weight:
        raise ProtocolError(f"weight {weight} outside (0, {ctx.max_weight}]")


class _PlainSite(SiteAggregator):
    def __init__(self, ctx: RoundContext, site_id: str) -> None:
        self._ctx = ctx
        self._site = site_id
        self._done = False

    def submit(self, vector: npt.NDArray[np.float32], weight: float) -> list[Envelope]:
        if self._done:
            raise ProtocolError("update already submitted this round")
        vector = np.asarray(vector, dtype=np.float32)
        _check_update(vector, weight, self._ctx)
        self._done = True
        payload = pack({"weight": float(weight), "vector": array_to_wire(vector)})
        return [
            Envelope(
                federation=self._ctx.federation,
                round=self._ctx.round,
                stage=_STAGE,
                sender=self._site,
                receiver=SERVER,
                payload=payload,
            )
        ]

    def handle(self, envelope: Envelope) -> list[Envelope]:
        raise ProtocolError(f"plain mode expects no server message, got {envelope.stage!r}")


class _PlainServer(ServerAggregator):
    def __init__(self, ctx: RoundContext) -> None:
        self._ctx = ctx
        self._sum = np.zeros(ctx.dimension, dtype=np.float64)
        self._weight = 0.0
        self._heard: list[str] = []
        self._result: AggregateResult | None = None
        self._closed = False
        self._departed: set[str] = set()
        #: SHA-256 of each update taken: a byte-identical repeat (a retry) changes nothing
        self._taken: dict[str, bytes] = {}

    def handle(self, envelope: Envelope) -> list[Envelope]:
        if self._closed:
            raise ProtocolError("round already aggregated")
        if envelope.stage != _STAGE or envelope.round != self._ctx.round:
            raise ProtocolError(f"unexpected message {envelope.stage!r} for round {envelope.round}")
        if envelope.sender not in self._ctx.cohort:
            raise ProtocolError(f"{envelope.sender!r} is not in this round's cohort")
        digest = hashlib.sha256(envelope.payload).digest()
        if envelope.sender in self._heard:
            if self._taken.get(envelope.sender) == digest:
                return []  # a retry or a duplicate of the update already counted
            raise ProtocolError(f"{envelope.sender!r} already sent a different update")
        body = unpack(envelope.payload)
        if not isinstance(body, dict) or set(body) != {"weight", "vector"}:
            raise WireError("malformed plain update")
        weight = body["weight"]
        if not isinstance(weight, float):
            raise WireError("weight must be a float")
        vector = array_from_wire(body["vector"], expected_len=self._ctx.dimension)
        _check_update(vector.astype(np.float32), weight, self._ctx)
        self._sum += weight * vector.astype(np.float64)
        self._weight += weight
        self._heard.append(envelope.sender)
        self._taken[envelope.sender] = digest
        if set(self._heard) | self._departed >= set(self._ctx.cohort):
            self._finish()
        return []

    def on_deadline(self) -> list[Envelope]:
        if not self._closed:
            self._finish()
        return []

    def on_departure(self, site_id: str) -> list[Envelope]:
        self._departed.add(site_id)
        if not self._closed and set(self._heard) | self._departed >= set(self._ctx.cohort):
            self._finish()
        return []

    def _finish(self) -> None:
        self._closed = True
        if len(self._heard) < self._ctx.min_sites:
            raise AbortError(
                f"only {len(self._heard)} site(s) submitted; the round needs {self._ctx.min_sites}"
            )
        self._result = AggregateResult(
            total_weight=self._weight,
            survivors=tuple(sorted(self._heard)),
            weighted_sum=self._sum,
        )

    @property
    def result(self) -> AggregateResult | None:
        return self._result

    @property
    def stage(self) -> str:
        return "done" if self._closed else "collecting updates"


class PlainMode(AggregationMode):
    """No protection at all: a baseline, loudly labelled."""

    name = "plain"
    hides_updates = False

    def site(self, ctx: RoundContext, site_id: str) -> SiteAggregator:
        return _PlainSite(ctx, site_id)

    _warned = False

    def server(self, ctx: RoundContext) -> ServerAggregator:
        if not self._warned:  # once per federation, not once per round
            log.warning(PLAIN_WARNING)
            self._warned = True
        return _PlainServer(ctx)
