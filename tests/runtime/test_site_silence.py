"""A site keeps its round while the server waits a whole stage timeout for a dropped peer.

The server sends the next stage only after ``stage_timeout_seconds`` when a
peer drops mid-stage, so a healthy server is silent for that long. A site
that took the link for lost after exactly that long left its round as the
server moved on and dropped the next stage's message as a straggler; with a
site killed in a mask round every survivor did so and the round failed
(``tests/deploy/test_processes.py``). The transport below delivers the next
message only to a receive that waits past the stage timeout (plus the time
the server needs to send it), with no real sleeping.
"""

from __future__ import annotations

from pathlib import Path

from securefl.aggregation import PlainMode
from securefl.config import DPConfig, RoundConfig, TrainConfig
from securefl.runtime.site import Site
from securefl.wire import SERVER, Envelope

STAGE_TIMEOUT = 30.0
SEND_DELAY = 0.5  # the server's work after its stage timeout, and the network


class _SilentServer:
    """Answers a receive only if its wait covers the server's silence; records every wait."""

    def __init__(self, silence: float, envelope: Envelope) -> None:
        self.silence, self.envelope = silence, envelope
        self.waits: list[float] = []
        self.sent: list[Envelope] = []

    def receive(self, timeout: float | None = None) -> Envelope | None:
        self.waits.append(float("inf") if timeout is None else timeout)
        if timeout is None or timeout >= self.silence:
            return self.envelope
        self.silence -= timeout  # time passes; the message is still to come
        return None

    def send(self, envelope: Envelope) -> None:
        self.sent.append(envelope)

    def close(self) -> None:
        pass


def test_a_site_waits_through_a_stage_the_server_spends_on_a_dropped_peer(tmp_path: Path) -> None:
    next_stage = Envelope(
        federation="ward", round=2, stage="mask/consistency", sender=SERVER,
        receiver="site-a", payload=b"",
    )  # fmt: skip
    server = _SilentServer(STAGE_TIMEOUT + SEND_DELAY, next_stage)
    site = Site(
        name="site-a",
        federation="ward",
        transport=server,  # type: ignore[arg-type]
        mode=PlainMode(),
        dp=DPConfig(epsilon=50.0, noise_multiplier=1.0, batch_size=8),
        train=TrainConfig(),
        rounds=RoundConfig(max_rounds=3, min_sites=2, stage_timeout_seconds=STAGE_TIMEOUT),
        state_dir=tmp_path / "state",
        roster=("site-a", "site-b"),
    )
    link = site._link
    link.connected = True  # the site has heard from the server before this stage
    assert link.next() is next_stage
    assert link.reconnections == 0, "the site left its round while the server waited"
    assert server.sent == [], "the site said hello again mid-round"
    assert server.waits[0] > STAGE_TIMEOUT + SEND_DELAY
