"""The site's sans-IO driver: envelopes in, envelopes out, and resumable after an error.

No transport, no model, no clock: each test feeds the driver the server's
envelopes and reads what it would send and what it says is due.
"""

from __future__ import annotations

import pytest

from securefl.aggregation.base import SiteAggregator
from securefl.errors import ProtocolError
from securefl.runtime import SiteDriver, SiteStage
from securefl.runtime import messages as m
from securefl.wire import SERVER, Envelope


class _Echo(SiteAggregator):
    """A site half that answers every server message with one of its own."""

    def submit(self, vector: object, weight: float) -> list[Envelope]:  # type: ignore[override]
        return []

    def handle(self, envelope: Envelope) -> list[Envelope]:
        return [_env(envelope.round, "x/answer", sender="site-a", receiver=SERVER)]


def _env(round_number: int, stage: str, *, sender: str = SERVER, receiver: str = "site-a",
         payload: bytes = b"") -> Envelope:  # fmt: skip
    return Envelope(
        federation="ward", round=round_number, stage=stage, sender=sender, receiver=receiver,
        payload=payload,
    )  # fmt: skip


def _in_round(driver: SiteDriver, round_number: int) -> None:
    _, event = driver.handle(_env(round_number, m.ROUND_START))
    assert event is not None and event.kind == "round_start"
    driver.accept(round_number, _Echo())
    out = driver.submitted(b"report", [_env(round_number, "x/update", sender="site-a",
                                             receiver=SERVER)])  # fmt: skip
    assert [e.stage for e in out] == [m.REPORT, "x/update"]  # the report goes first


def test_a_round_runs_through_the_driver_and_ends() -> None:
    driver = SiteDriver(name="site-a", federation="ward")
    assert [e.stage for e in driver.hello()] == [m.HELLO]
    _in_round(driver, 1)
    out, event = driver.handle(_env(1, "x/request"))
    assert [e.stage for e in out] == ["x/answer"] and event is None
    end = m.RoundEnd(status="aggregated", survivors=("site-a",), reason="").to_bytes()
    _, event = driver.handle(_env(1, m.ROUND_END, payload=end))
    assert event is not None and event.kind == "round_end"
    assert driver.stage is SiteStage.WAITING


def test_resume_leaves_the_round_and_drops_its_stragglers() -> None:
    """After a transport error: hello again, the old round's messages are dropped unread."""
    driver = SiteDriver(name="site-a", federation="ward")
    driver.hello()
    _in_round(driver, 2)
    assert [e.stage for e in driver.resume()] == [m.HELLO]
    assert driver.stage is SiteStage.WAITING and 2 in driver.left_rounds
    assert driver.handle(_env(2, "x/request")) == ([], None)  # a straggler of round 2
    assert driver.handle(_env(2, m.ROUND_END)) == ([], None)
    _in_round(driver, 3)  # the next round start is taken


def test_a_later_round_start_leaves_the_round_but_the_same_start_is_refused() -> None:
    driver = SiteDriver(name="site-a", federation="ward")
    driver.hello()
    _in_round(driver, 4)
    with pytest.raises(ProtocolError):
        driver.handle(_env(4, m.ROUND_START))  # the same round again
    _, event = driver.handle(_env(6, m.ROUND_START))  # the server went on (it restarted)
    assert event is not None and event.kind == "round_start" and 4 in driver.left_rounds


def test_out_of_order_messages_are_refused() -> None:
    driver = SiteDriver(name="site-a", federation="ward")
    driver.hello()
    with pytest.raises(ProtocolError):
        driver.submitted(b"", [])  # nothing accepted
    with pytest.raises(ProtocolError):
        driver.handle(_env(1, m.ROUND_START, sender="site-b"))  # not the server
    with pytest.raises(ProtocolError):
        driver.handle(Envelope(federation="other", round=1, stage=m.ROUND_START,
                               sender=SERVER, receiver="site-a", payload=b""))  # fmt: skip
    driver.leave("done")
    with pytest.raises(ProtocolError):
        driver.hello()


class _Refusing(_Echo):
    """A site half that refuses whatever the server sends it (a malformed stage message)."""

    def handle(self, envelope: Envelope) -> list[Envelope]:
        raise ProtocolError("malformed share request")


def test_a_straggler_of_a_round_never_joined_is_dropped_and_the_next_round_is_taken() -> None:
    """A restarted driver is handed what the server queued for the process that died."""
    driver = SiteDriver(name="site-a", federation="ward")
    driver.hello()
    assert driver.handle(_env(2, "x/request")) == ([], None)
    assert driver.handle(_env(2, m.ROUND_END)) == ([], None)
    _in_round(driver, 3)


def test_the_drop_path_never_skips_a_round_start_even_of_a_round_left() -> None:
    """A replayed or stale-numbered round start still reaches the caller's checks (to refuse)."""
    driver = SiteDriver(name="site-a", federation="ward")
    driver.hello()
    _in_round(driver, 2)
    driver.resume()  # round 2 left
    for number in (2, 1, 7):  # left, never joined (old), never joined (new)
        _, event = driver.handle(_env(number, m.ROUND_START))
        assert event is not None and event.kind == "round_start" and event.envelope.round == number


@pytest.mark.parametrize(
    "forged",
    [
        _env(2, "x/request", sender="site-b"),
        _env(2, "x/request", receiver="site-b"),
        Envelope(
            federation="other",
            round=2,
            stage="x/request",
            sender=SERVER,
            receiver="site-a",
            payload=b"",
        ),
    ],
    ids=["another-sender", "another-receiver", "another-federation"],
)
def test_a_forged_message_dressed_as_a_straggler_is_refused(forged: Envelope) -> None:
    driver = SiteDriver(name="site-a", federation="ward")
    driver.hello()
    _in_round(driver, 2)
    driver.resume()  # round 2 left: its true stragglers are dropped, forged ones are not
    with pytest.raises(ProtocolError):
        driver.handle(forged)


def test_a_bad_message_of_the_round_the_site_is_in_is_refused_not_dropped() -> None:
    """The drop path is for rounds without this site's state; its own round is checked."""
    driver = SiteDriver(name="site-a", federation="ward")
    driver.hello()
    _, event = driver.handle(_env(5, m.ROUND_START))
    assert event is not None
    driver.accept(5, _Refusing())
    with pytest.raises(ProtocolError):
        driver.handle(_env(5, "x/request"))  # before this site submitted: out of order
    driver.submitted(b"report", [])
    with pytest.raises(ProtocolError):
        driver.handle(_env(5, "x/request"))  # the half's own check refuses it
