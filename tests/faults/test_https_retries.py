"""Over real HTTPS: a lost answer, a hostile site's flood of ids, a site that stops polling.

Each test runs uvicorn on 127.0.0.1 with mutual TLS and the real round
driver; the sites follow the protocol with their modes' real halves.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from fault_federation import SITES, TOLERANCE, SitePlan, expected_model, run_federation
from faulty import LoseResponses
from https_harness import FED, https_server

from securefl.errors import TransportError
from securefl.runtime import messages as m
from securefl.runtime.server import ServerDriver
from securefl.transport.base import Transport
from securefl.transport.https_client import HttpsSiteTransport
from securefl.transport.https_server import driver_gate
from securefl.transport.signed import seal
from securefl.wire import SERVER, Envelope


def _gate(https):  # type: ignore[no-untyped-def]
    def install(driver: ServerDriver) -> None:
        https.transport.set_gate(driver_gate(driver))

    return install


def test_a_lost_answer_makes_the_site_resend_and_the_server_takes_the_message_once(
    tmp_path: Path,
) -> None:
    """Every answer to site-b's first attempt of each message is lost, in a mask run."""
    with https_server(tmp_path / "pki", SITES) as https:
        lossy: dict[str, LoseResponses] = {}

        def connect(name: str) -> Transport:
            t = https.site(name)
            if name == "site-b":
                lossy[name] = t._client._transport = LoseResponses(t._client._transport)  # type: ignore[assignment]
            return t

        run = run_federation(
            "mask", tmp_path, server=https.transport, connect=connect, on_driver=_gate(https)
        )
    lost = lossy["site-b"]
    # hello, then per round: report and five stages; all taken (202), all answers lost
    assert len(lost.lost) == 1 + 2 * 6 and set(lost.lost) == {202}
    assert lost.retried == [200] * len(lost.lost)  # each resend: recognised, not delivered again
    assert run.errors == {} and run.violations == []
    assert [(h.status, h.survivors) for h in run.history] == [("aggregated", SITES)] * 2
    for site in SITES:
        np.testing.assert_allclose(run.final[site], expected_model(2), atol=TOLERANCE["mask"])


def _hello(site: str) -> Envelope:
    return Envelope(federation=FED, round=0, stage=m.HELLO, sender=site, receiver=SERVER,
                    payload=b"")  # fmt: skip


def _to(site: str, rnd: int) -> Envelope:
    return Envelope(federation=FED, round=rnd, stage=m.ROUND_START, sender=SERVER, receiver=site,
                    payload=b"start")  # fmt: skip


def test_ids_of_closed_rounds_are_forgotten_and_a_late_replay_is_never_delivered_again(
    tmp_path: Path,
) -> None:
    with https_server(tmp_path, ("site-a", "site-b")) as https:
        driver = _FakeDriver(round=1)
        https.transport.set_gate(driver_gate(driver))  # type: ignore[arg-type]
        a, key = https.raw("site-a"), https.pki.sites["site-a"].identity
        https.transport.send(_to("site-a", 1))
        frame = seal(Envelope(federation=FED, round=1, stage="plain/update", sender="site-a",
                              receiver=SERVER, payload=b"update"), key)  # fmt: skip
        assert a.post("/v1/send", content=frame).status_code == 202
        assert https.transport.seen_ids == 1
        driver.round = 2
        https.transport.send(_to("site-a", 2))  # round 2 opens: round 1's ids are still kept
        assert https.transport.seen_ids == 1
        assert a.post("/v1/send", content=frame).status_code == 200  # a late retry: acknowledged
        driver.round = 3
        https.transport.send(_to("site-a", 3))  # round 3 opens: round 1 is long closed
        assert https.transport.seen_ids == 0
        # the forgotten id replayed: its round has ended, so the gate drops it unseen
        assert a.post("/v1/send", content=frame).status_code == 200
        delivered = []
        while (env := https.transport.receive(timeout=0.05)) is not None:
            delivered.append(env)
        assert [e.payload for e in delivered] == [b"update"]


class _FakeDriver:
    def __init__(self, round: int) -> None:
        self.round = round
        self.stage = type("S", (), {"value": "round open"})()
        self.aggregator_stage = "collecting updates"

    @property
    def current_round(self) -> int:
        return self.round


def test_a_site_sending_many_ids_cannot_grow_the_servers_id_table(tmp_path: Path) -> None:
    """A hostile roster site sends 60 hellos (they pass the gate at any time), each a new id."""
    with https_server(tmp_path, ("site-a", "site-b"), max_ids_per_site=8) as https:
        b, b_key = https.raw("site-b"), https.pki.sites["site-b"].identity
        honest = seal(_hello("site-b"), b_key)
        assert b.post("/v1/send", content=honest).status_code == 202
        a, a_key = https.raw("site-a"), https.pki.sites["site-a"].identity
        for _ in range(60):
            assert a.post("/v1/send", content=seal(_hello("site-a"), a_key)).status_code == 202
        assert https.transport.seen_ids == 8 + 1  # the flooding site's newest 8, and site-b's
        # the other site's retry is still recognised: the flood evicted only the flooder's ids
        assert b.post("/v1/send", content=honest).status_code == 200
        senders = []
        while (env := https.transport.receive(timeout=0.05)) is not None:
            senders.append(env.sender)
        assert senders.count("site-b") == 1 and senders.count("site-a") == 60


def test_a_site_that_stops_polling_is_left_out_of_the_next_cohort_and_rejoins_with_hello(
    tmp_path: Path,
) -> None:
    """site-d takes round 2's start and then neither answers nor polls (as if killed).

    Round 2 waits for it until its deadline: nothing could know sooner,
    since a site may train for longer than any interval. Round 2's end finds
    site-d silent for longer than the liveness interval, so round 3 opens
    without it instead of waiting its deadline again. site-d then comes back
    and says hello, and round 5 has it again.
    """
    back = threading.Event()

    def hold_round_4(rnd: int) -> None:
        if rnd == 4:  # round 4 opened without site-d: wait until it has said hello again
            assert back.wait(timeout=30)

    with https_server(tmp_path / "pki", SITES, liveness=1.0) as https:
        holder: list[ServerDriver] = []

        def install(driver: ServerDriver) -> None:
            holder.append(driver)
            _gate(https)(driver)

        plans = {s: SitePlan(before_submit=hold_round_4) for s in SITES if s != "site-d"}
        plans["site-d"] = SitePlan(
            die_at=2, rejoin_when=lambda: len(holder[0].history) >= 3, rejoined=back.set
        )
        run = run_federation(
            "plain",
            tmp_path,
            rounds=5,
            plans=plans,
            stage_timeout=3.0,
            server=https.transport,
            connect=https.site,
            on_driver=install,
        )
    assert run.errors == {}, [(h.round, h.cohort, h.status, h.reason) for h in run.history]
    cohorts = [h.cohort for h in run.history]
    assert cohorts[0] == cohorts[1] == SITES  # round 2: site-d died after it opened
    assert run.history[1].survivors == ("site-a", "site-b", "site-c")
    assert cohorts[2] == cohorts[3] == ("site-a", "site-b", "site-c")  # left out, not waited for
    assert cohorts[4] == SITES and run.history[4].survivors == SITES  # back after its hello
    assert all(h.status == "aggregated" for h in run.history)


def test_liveness_is_measured_from_the_last_request_or_open_poll(tmp_path: Path) -> None:
    """A site with a poll open is never taken for gone; one silent past the interval is."""
    clock = [100.0]
    with https_server(tmp_path, ("site-a", "site-b"), liveness=5.0, clock=lambda: clock[0]) as h:
        a = h.site("site-a")
        a.send(_hello("site-a"))
        clock[0] += 4.0
        h.transport.send(_to("site-a", 1))  # silent 4 s of 5: still here
        assert isinstance(a, HttpsSiteTransport) and a.receive(timeout=1) is not None
        clock[0] += 6.0
        with pytest.raises(TransportError, match="taken for gone"):
            h.transport.send(_to("site-a", 2))
        h.transport.send(_to("site-b", 2))  # never heard from: not judged
