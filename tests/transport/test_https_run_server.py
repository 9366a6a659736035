"""The unchanged sans-IO driver and its loop (``run_server``) over the HTTPS transport.

Two roster sites speak the runtime protocol over real mutual TLS; a
certificate holder who is not on the roster tries to join and is refused,
and the rounds still open with the roster's sites and aggregate.
"""

from __future__ import annotations

import threading

import numpy as np
from transport_pki import Pki

from securefl.aggregation import PlainMode, RoundContext
from securefl.config import RoundConfig
from securefl.params import ParamSpec
from securefl.runtime import messages as m
from securefl.runtime.global_model import PlainGlobalModel
from securefl.runtime.loop import run_server
from securefl.runtime.server import ServerDriver
from securefl.strategy import FedAvg
from securefl.transport._status import progress_logger
from securefl.transport.https_server import driver_gate
from securefl.transport.signed import seal
from securefl.wire import SERVER, Envelope

SPEC = ParamSpec(names=("w",), shapes=((3,),), dtypes=("float32",))
UPDATES = {"site-a": (np.array([1, 2, 3], np.float32), 10.0),
           "site-b": (np.array([3, 2, 1], np.float32), 30.0)}  # fmt: skip


def _site(fed, name: str, errors: list[BaseException]) -> None:
    t = fed.site(name)
    try:
        t.send(Envelope(federation="fed", round=0, stage=m.HELLO, sender=name, receiver=SERVER,
                        payload=b""))  # fmt: skip
        while True:
            env = t.receive(timeout=30)
            assert env is not None, "no word from the server"
            if env.stage == m.FINISH:
                return
            if env.stage != m.ROUND_START:
                continue
            start = m.decode(env.payload, m.RoundStart)
            ctx = RoundContext(federation="fed", round=env.round, cohort=tuple(start.cohort),
                               dimension=3, max_weight=100.0, min_sites=2)  # fmt: skip
            report = m.Report(metrics={"val_accuracy": 0.5, "epsilon": 0.25}).to_bytes()
            t.send(Envelope(federation="fed", round=env.round, stage=m.REPORT, sender=name,
                            receiver=SERVER, payload=report))  # fmt: skip
            vector, weight = UPDATES[name]
            for out in PlainMode().site(ctx, name).submit(vector, weight):
                t.send(out)
    except BaseException as exc:
        errors.append(exc)


def test_run_server_completes_rounds_over_https_and_a_stranger_cannot_join(tmp_path, serve):
    pki = Pki.make(tmp_path)
    stranger = pki.add_site("mallory", folder="mallory")
    driver = ServerDriver(
        federation="fed", mode=PlainMode(), strategy=FedAvg(),
        model=PlainGlobalModel(np.zeros(3, dtype=np.float32)), spec=SPEC,
        rounds=RoundConfig(max_rounds=2, min_sites=2), max_weight=100.0,
        expected_sites=("site-a", "site-b"),
    )  # fmt: skip
    fed = serve(pki)
    fed.transport.set_gate(driver_gate(driver))
    hello = Envelope(federation="fed", round=0, stage=m.HELLO, sender="mallory", receiver=SERVER,
                     payload=b"")  # fmt: skip
    assert (
        fed.raw(stranger).post("/v1/send", content=seal(hello, stranger.identity)).status_code
        == 403
    )

    errors: list[BaseException] = []
    sites = [threading.Thread(target=_site, args=(fed, s, errors)) for s in ("site-a", "site-b")]
    for t in sites:
        t.start()
    run_server(driver, fed.transport, stage_timeout=30, on_progress=progress_logger)
    for t in sites:
        t.join(timeout=30)
    assert errors == []
    assert [h.status for h in driver.history] == ["aggregated", "aggregated"]
    assert all(h.cohort == ("site-a", "site-b") for h in driver.history)
    mean = (UPDATES["site-a"][0] * 10 + UPDATES["site-b"][0] * 30) / 40
    np.testing.assert_allclose(driver.model.plaintext(), 2 * mean, rtol=1e-6)
    status = fed.raw(pki.sites["site-a"]).get("/status").json()
    assert status["round"] == 2 and status["stage"] == "finished"
    assert status["sites"]["site-a"]["epsilon"] == 0.25
    assert status["last_aggregate"] is not None and status["dropped_this_round"] == []
