"""The I/O half of the server: feed a transport into the sans-IO driver.

All clocks live here. The driver is told "the deadline passed" when no
message moved the current stage forward within ``stage_timeout`` seconds;
that is how dropped sites are noticed. A message that breaks the protocol is
logged and dropped (the site that sent it is not trusted further), and the
round goes on with the others.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

from securefl.errors import SecureFLError, TransportError
from securefl.runtime.server import ServerDriver, ServerStage
from securefl.transport.base import Transport
from securefl.wire import Envelope

__all__ = ["run_server"]

log = logging.getLogger(__name__)


def run_server(
    driver: ServerDriver,
    transport: Transport,
    *,
    stage_timeout: float,
    poll: float = 0.05,
    on_progress: Callable[[ServerDriver], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    quiescent: Callable[[], bool] | None = None,
    keep_running: Callable[[], bool] | None = None,
) -> None:
    """Run until the driver finishes. ``on_progress`` is called after every change.

    ``quiescent`` (simulation only) says no party can make progress without a
    deadline; the deadline is then declared at once. ``keep_running``
    returning False stops the loop early (a simulation whose sites all exited).
    """
    outbox: list[Envelope] = list(driver.start())
    unreachable: list[str] = []
    last_change = clock()
    marker = (driver.current_round, driver.aggregator_stage)
    while driver.stage is not ServerStage.FINISHED or outbox:
        for env in outbox:
            try:
                transport.send(env)
            except TransportError:  # a vanished site must not stop the federation
                log.warning("could not deliver %s to %s", env.stage, env.receiver)
                unreachable.append(env.receiver)
        outbox = []
        for site in dict.fromkeys(unreachable):
            outbox += _guarded(functools.partial(driver.site_unreachable, site))
        unreachable = []
        if outbox:
            continue
        # every envelope of the last step is out and unreachable sites are known:
        # only now may the next round choose its cohort
        outbox = _guarded(driver.advance)
        if outbox:
            continue
        if driver.stage is ServerStage.FINISHED:
            break
        if keep_running is not None and not keep_running():
            # the sites still listening are told, instead of waiting for their timeout
            outbox = driver.halt("every site has left the federation")
            continue
        received = transport.receive(timeout=poll)
        if received is not None:
            outbox = _guarded(functools.partial(driver.handle, received))
        # the deadline is checked on every pass, so a chatty site cannot hold it off
        stalled = clock() - last_change > stage_timeout
        if stalled or (received is None and quiescent is not None and quiescent()):
            outbox += _guarded(driver.on_deadline)
            last_change = clock()
        now_marker = (driver.current_round, driver.aggregator_stage)
        if now_marker != marker:
            marker = now_marker
            last_change = clock()
            if on_progress is not None:
                on_progress(driver)


def _guarded(step: Callable[[], list[Envelope]]) -> list[Envelope]:
    """One driver step; a bad message or misbehaving peer is logged, never fatal."""
    try:
        return step()
    except SecureFLError as exc:
        log.warning("dropped a message or step: %s", exc)
        return []
