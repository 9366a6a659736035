"""A roster site cannot queue model-sized hellos or goodbyes at the server.

``fed/hello`` and ``fed/bye`` pass the round gate at any time, and the
transport's body limit is sized for the model (megabytes). A signed hello of
that size would be hashed, copied and queued for the driver, which decodes
it under its own 256-byte limit only later; while the driver is busy, or in
the grace period after the run, such hellos pile up. The gate refuses them
by their announced size before the payload is copied or queued.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from securefl.runtime.messages import BYE, HELLO, Hello
from securefl.transport._gate import ANYTIME_PAYLOAD_LIMITS, driver_gate
from securefl.wire import SERVER, EnvelopeHeader

_DRIVER = SimpleNamespace(stage="round open", current_round=3, aggregator_stage="mask/share")


def _header(stage: str, size: int) -> EnvelopeHeader:
    return EnvelopeHeader(
        federation="f", round=0, stage=stage, sender="site-a", receiver=SERVER, payload_size=size
    )


@pytest.mark.parametrize("stage", [HELLO, BYE])
def test_a_model_sized_hello_or_goodbye_is_refused_before_it_is_read(stage: str) -> None:
    gate = driver_gate(_DRIVER)
    assert gate(_header(stage, 4_000_000)) is not None
    assert gate(_header(stage, ANYTIME_PAYLOAD_LIMITS[stage] + 1)) is not None


@pytest.mark.parametrize("stage", [HELLO, BYE])
def test_hellos_and_goodbyes_within_their_limit_pass_at_any_time(stage: str) -> None:
    gate = driver_gate(_DRIVER)
    assert gate(_header(stage, 0)) is None
    assert gate(_header(stage, ANYTIME_PAYLOAD_LIMITS[stage])) is None


def test_the_hello_limit_admits_the_largest_hello_a_site_sends() -> None:
    largest = Hello(aggregates=2**63 - 1, head=b"\xff" * 32).to_bytes()
    assert len(largest) <= ANYTIME_PAYLOAD_LIMITS[HELLO]
