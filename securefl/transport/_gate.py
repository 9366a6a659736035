"""Which envelopes the server takes now: the round and stage the driver is in.

The transport asks the gate before an envelope reaches the driver, so a late
or replayed message of an earlier stage is refused before it is decoded, and
a message of a round that has ended is acknowledged without reaching the
driver at all (docs/transport.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from securefl.runtime.messages import BYE, HELLO, REPORT, Hello
from securefl.wire import EnvelopeHeader

__all__ = ["ENDED", "driver_gate"]


class _Driver(Protocol):
    @property
    def stage(self) -> Any: ...
    @property
    def current_round(self) -> int: ...
    @property
    def aggregator_stage(self) -> str: ...


#: what a gate returns for a message of a round that has ended: acknowledged, dropped
ENDED = "the round has ended"

#: the largest payload of the messages a site may send at any time: a hello is
#: decoded under its own 256-byte limit, a goodbye carries a short reason; the
#: transport's body limit is sized for the model, so without these a roster
#: site could queue model-sized hellos faster than the driver reads them
ANYTIME_PAYLOAD_LIMITS = {HELLO: Hello.LIMITS.max_bytes, BYE: 4096}


def _oversized(header: EnvelopeHeader) -> str | None:
    limit = ANYTIME_PAYLOAD_LIMITS.get(header.stage)
    if limit is not None and header.payload_size > limit:
        return f"a {header.stage!r} of {header.payload_size} bytes (at most {limit})"
    return None


def driver_gate(
    driver: _Driver, *, anytime: tuple[str, ...] = (HELLO, BYE)
) -> Callable[[EnvelopeHeader], str | None]:
    """Refuse (409) envelopes for a round or protocol stage the driver is not in.

    Stages in ``anytime`` (``fed/hello``, ``fed/bye``) come at any time, hellos and
    goodbyes within :data:`ANYTIME_PAYLOAD_LIMITS`.
    A message of a round that has ended (an earlier round, or the last one
    once it closed or a restart abandoned it) is :data:`ENDED`: the
    transport acknowledges it once its signature verifies and drops it, so a
    site retrying across a round's end or a server restart is never told it
    broke the protocol, and nothing of it reaches the driver. A later round
    than the driver's is refused. Everything else must carry the round the
    driver has open; while a
    ``mask/...`` stage runs, only that stage (besides the site's
    ``fed/report``) is taken, so a late or replayed message of an earlier
    stage is refused before it is decoded. Other modes' stages are left to
    their aggregator, which refuses what it does not expect. The driver is
    read from another thread: a message that passes just before the stage
    moves is refused by the driver itself.
    """

    def gate(header: EnvelopeHeader) -> str | None:
        if header.stage in anytime:
            return _oversized(header)
        is_open = getattr(driver.stage, "value", driver.stage) == "round open"
        if header.round < driver.current_round or (
            not is_open and 0 < header.round == driver.current_round
        ):
            return ENDED
        if not is_open:
            return "no round is open"
        if header.round != driver.current_round:
            return f"round {header.round} is not the open round {driver.current_round}"
        stage = driver.aggregator_stage
        if stage.startswith("mask/") and header.stage not in (REPORT, stage):
            return f"stage {header.stage!r} is not the current stage {stage!r}"
        return None

    return gate
