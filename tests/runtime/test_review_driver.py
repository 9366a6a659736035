"""Adversarial review of the driver's he downlink: a roster site that repeats ``fed/hello``.

After the run a hello is answered at once with the final model: for a site
that names nothing it holds, the whole history (θ₀ and every aggregate: up
to the 300 MB message limit). Were it encoded (and hashed and signed by the
transport) again for every small hello, one roster site could keep the
coordinator's CPU busy with work proportional to the history per request.
The server sends a site a new copy only when the copy it has not
acknowledged does not already reach the current model from what the site
holds (``EncryptedAggregatesModel.rejoin``); the honest side of that bound
is in ``tests/runtime/test_he_hello.py``.
"""

import numpy as np

from securefl.aggregation import AggregateResult, PlainMode, RoundContext
from securefl.config import RoundConfig, StrategyConfig
from securefl.params import ParamSpec
from securefl.runtime import messages as m
from securefl.runtime.encrypted_model import EncryptedAggregatesModel
from securefl.runtime.global_model import PlainGlobalModel
from securefl.runtime.server import ServerDriver, ServerStage
from securefl.strategy import FedAvg
from securefl.wire import SERVER, Envelope

D = 4
SPEC = ParamSpec(names=("w",), shapes=((D,),), dtypes=("float32",))
ROSTER = ("a", "b", "c")
AGGREGATE_BYTES = 200_000
ROUNDS = 5


def _hello(site: str) -> Envelope:
    return Envelope(federation="f", round=0, stage=m.HELLO, sender=site, receiver=SERVER,
                    payload=b"")  # fmt: skip


def test_repeated_hellos_do_not_make_the_server_encode_the_history_each_time():
    model = EncryptedAggregatesModel(np.zeros(D, np.float32), StrategyConfig(name="fedavg"))
    for r in range(1, ROUNDS + 1):  # the ciphertext bytes are opaque to the server
        model.apply(
            AggregateResult(total_weight=3.0, survivors=ROSTER,
                            encrypted_sum=bytes([r]) * AGGREGATE_BYTES),
            FedAvg(), r,
        )  # fmt: skip
    driver = ServerDriver(
        federation="f", mode=PlainMode(), strategy=FedAvg(), model=model, spec=SPEC,
        rounds=RoundConfig(max_rounds=ROUNDS, min_sites=3), max_weight=10.0,
        expected_sites=ROSTER, admit=ROSTER,
    )  # fmt: skip
    driver.stop("the run ended")
    history = ROUNDS * AGGREGATE_BYTES
    encoded = 0
    for _ in range(50):  # 50 requests of a few hundred bytes each
        encoded += sum(len(env.payload) for env in driver.handle(_hello("a")))
    assert encoded >= history  # the site does get the whole history once
    assert encoded <= 2 * history, f"50 hellos made the server encode {encoded / history:.0f}×"


def _submit(d: ServerDriver, site: str, accuracy: float) -> None:
    ctx = RoundContext(
        federation="f", round=d.current_round, cohort=d._cohort, dimension=D,
        max_weight=10.0, min_sites=3,
    )  # fmt: skip
    report = m.Report(metrics={"val_accuracy": accuracy}).to_bytes()
    d.handle(Envelope(federation="f", round=d.current_round, stage=m.REPORT, sender=site,
                      receiver=SERVER, payload=report))  # fmt: skip
    for env in PlainMode().site(ctx, site).submit(np.full(D, 0.01, np.float32), 5.0):
        d.handle(env)


def test_one_site_cannot_end_the_federation_early_while_the_others_improve():
    """Site c reports an accuracy of 1e300 once (finite: the report check passes), then 0.5.

    Sites a and b improve every round. With a mean of the reports the
    monitored value would never beat round 1 again and the federation would
    stop after ``patience`` rounds; the median follows the honest majority.
    """
    driver = ServerDriver(
        federation="f", mode=PlainMode(), strategy=FedAvg(),
        model=PlainGlobalModel(np.zeros(D, np.float32)), spec=SPEC,
        rounds=RoundConfig(max_rounds=6, min_sites=3, patience=2), max_weight=10.0,
        expected_sites=ROSTER, admit=ROSTER,
    )  # fmt: skip
    for site in ROSTER:
        driver.handle(_hello(site))
    for r in range(1, 7):
        if driver.stage is ServerStage.FINISHED:
            break
        honest = 0.5 + 0.05 * r
        _submit(driver, "a", honest)
        _submit(driver, "b", honest)
        _submit(driver, "c", 1e300 if r == 1 else 0.5)
        driver.advance()
    assert driver.completed_rounds == 6, driver.finish_reason
