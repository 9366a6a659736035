"""The site's I/O around its sans-IO driver: send, receive, and reconnect after an error.

Why apart from the driver: the driver decides what to say; this decides how
long to wait and when to try again. A transport error (the server
restarted, the network was cut, a request timed out after the transport's
own retries) does not end the site: it backs off with full jitter
(:class:`~securefl.transport.https_client.RetryPolicy`), calls
:meth:`SiteDriver.resume` (the round in progress is left, its privacy stays
charged) and says hello again, so the site takes part from the next round
the server opens. Failures are counted until the server is heard from again;
after ``reconnect.attempts`` in a row the site gives up with one
:class:`TransportError`. A site that never heard from the server at all does
not reconnect: the transport's own retries already waited for it, and an
operator who gave a wrong address should hear so at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from securefl.errors import TransportError
from securefl.runtime._site_round import receive_from_server
from securefl.runtime.site_driver import SiteDriver
from securefl.transport.base import Transport
from securefl.transport.https_client import RetryPolicy
from securefl.wire import Envelope

__all__ = ["SiteLink", "silence_allowance"]


def silence_allowance(stage_timeout: float) -> float:
    """How long a site hears nothing from the server before it takes the link for lost.

    A healthy server is silent for a whole stage timeout whenever a peer
    drops: it waits that long for the peer before it sends the next stage.
    A site that gave up after exactly that long would leave its round just
    as the server moved on, drop the next stage's message as a straggler,
    and the round would fail for every site (seen with a site killed in a
    mask round). Twice the stage timeout plus a network margin keeps the two
    clocks apart; a server that is really gone is still found (its polls
    fail at once, or a restarted one answers 410).
    """
    return 2.0 * stage_timeout + 10.0


log = logging.getLogger("securefl.runtime.site")


class SiteLink:
    """One site's connection to the server, kept up across transport errors."""

    def __init__(
        self,
        transport: Transport,
        driver: SiteDriver,
        *,
        reconnect: RetryPolicy,
        timeout: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.transport = transport
        self.driver = driver
        self.reconnect = reconnect
        self.timeout = timeout
        self.sleep = sleep
        self.failures = 0
        #: how many times the site reconnected (for tests and progress)
        self.reconnections = 0
        #: whether the server was ever heard from (only then is a lost link re-made)
        self.connected = False

    def send_all(self, envelopes: list[Envelope]) -> None:
        """Send in order; on a transport error reconnect (the round in progress is left)."""
        try:
            for env in envelopes:
                self.transport.send(env)
        except TransportError as exc:
            self._reconnect(exc)

    def next(self) -> Envelope:
        """The server's next envelope; a transport error reconnects and waits again."""
        while True:
            try:
                env = receive_from_server(
                    self.transport,
                    site=self.driver.name,
                    federation=self.driver.federation,
                    timeout=self.timeout,
                )
            except TransportError as exc:
                self._reconnect(exc)
                continue
            self.failures = 0
            self.connected = True
            return env

    def leave(self, reason: str) -> None:
        """Say goodbye, best effort: an unreachable server learns it from its deadline."""
        try:
            for env in self.driver.leave(reason):
                self.transport.send(env)
        except TransportError:
            log.debug("server unreachable while leaving")

    def _reconnect(self, exc: TransportError) -> None:
        if not self.connected:
            raise exc
        while True:
            if self.failures >= self.reconnect.attempts:
                raise TransportError(
                    f"{exc}; gave up after {self.failures} attempt(s) to reconnect"
                ) from None
            self.sleep(self.reconnect.delay(self.failures))
            self.failures += 1
            log.warning("%s: %s; reconnecting (attempt %d)", self.driver.name, exc, self.failures)
            try:
                for env in self.driver.resume():
                    self.transport.send(env)
            except TransportError as again:
                exc = again
                continue
            self.reconnections += 1
            return
