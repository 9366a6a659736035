"""An in-process federation of the real round driver and each mode's real halves, with faults.

No training and no DP noise: each site submits a fixed update, so a run's
result is known in advance (θ₀ plus the weighted mean of the updates under
FedAvg) and a faulty run can be compared with a fault-free one. The sites
are thin loops over their mode's site half (what ``Site.rounds`` does
without the privacy machinery), each over a :class:`FaultyTransport`
around its memory transport; the server is ``run_server`` over the memory
hub, as in ``simulate``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from faulty import Fault, FaultyTransport

from securefl.aggregation.base import (
    AggregateResult,
    AggregationMode,
    RoundContext,
    ServerAggregator,
    SiteAggregator,
)
from securefl.config import FederationConfig, RoundConfig, StrategyConfig
from securefl.errors import ProtocolError
from securefl.hazmat.sign import SigningKey
from securefl.params import ParamSpec
from securefl.runtime import messages as m
from securefl.runtime._rounds import RoundSummary
from securefl.runtime._site_round import receive_from_server, round_digest
from securefl.runtime.loop import run_server
from securefl.runtime.server import ServerDriver
from securefl.simulation.modes import make_setup
from securefl.strategy import make_strategy
from securefl.transport.base import Transport
from securefl.transport.memory import MemoryHub
from securefl.wire import SERVER, Envelope

FED = "fed"
SITES = ("site-a", "site-b", "site-c", "site-d")
DIM = 6
MAX_WEIGHT = 64.0
WEIGHTS = {"site-a": 10.0, "site-b": 20.0, "site-c": 30.0, "site-d": 40.0}
THETA0 = np.linspace(-0.2, 0.3, DIM, dtype=np.float32)
SPEC = ParamSpec(names=("w",), shapes=((DIM,),), dtypes=("float32",))

#: the stages each site sends in, per mode (the report comes first in every mode)
STAGES = {
    "plain": ("fed/report", "plain/update"),
    "mask": (
        "fed/report",
        "mask/advertise",
        "mask/share",
        "mask/masked-input",
        "mask/consistency",
        "mask/unmask",
    ),
    "he": ("fed/report", "he/update"),
}
#: how close two runs' models must be: mask and he round (stochastically) to a grid
TOLERANCE = {"plain": 1e-6, "mask": 1e-3, "he": 1e-3}


def update(site: str, rnd: int) -> npt.NDArray[np.float32]:
    """Site ``site``'s fixed update in round ``rnd``."""
    i = SITES.index(site) + 1
    return (np.arange(DIM, dtype=np.float32) - i * rnd) / (10.0 * i)


def expected_model(rounds: int, sites: tuple[str, ...] = SITES) -> npt.NDArray[np.float64]:
    """θ after ``rounds`` FedAvg rounds of every site in ``sites``."""
    theta = THETA0.astype(np.float64)
    for r in range(1, rounds + 1):
        total = sum(WEIGHTS[s] for s in sites)
        theta = theta + sum(WEIGHTS[s] * update(s, r).astype(np.float64) for s in sites) / total
    return theta


class _Recording(ServerAggregator):
    """A server half that notes every violation it finds: a refusal, or a site it rejects."""

    def __init__(self, inner: ServerAggregator, violations: list[str]) -> None:
        self.inner = inner
        self.violations = violations

    def start(self) -> list[Envelope]:
        return self.inner.start()

    def handle(self, envelope: Envelope) -> list[Envelope]:
        before = dict(getattr(self.inner, "rejected", {}))
        try:
            out = self.inner.handle(envelope)
        except ProtocolError as exc:
            self.violations.append(f"{envelope.sender} {envelope.stage}: {exc}")
            raise
        after = getattr(self.inner, "rejected", {})
        self.violations += [f"{s}: {after[s]}" for s in after if s not in before]
        return out

    def on_deadline(self) -> list[Envelope]:
        return self.inner.on_deadline()

    def on_departure(self, site_id: str) -> list[Envelope]:
        return self.inner.on_departure(site_id)

    @property
    def result(self) -> AggregateResult | None:
        return self.inner.result

    @property
    def stage(self) -> str:
        return self.inner.stage


class _RecordingMode(AggregationMode):
    name = "recording"
    hides_updates = True

    def __init__(self, inner: AggregationMode, violations: list[str]) -> None:
        self.inner = inner
        self.violations = violations

    def site(self, ctx: RoundContext, site_id: str) -> SiteAggregator:
        return self.inner.site(ctx, site_id)

    def server(self, ctx: RoundContext) -> ServerAggregator:
        return _Recording(self.inner.server(ctx), self.violations)


@dataclass
class Run:
    driver: ServerDriver
    transports: dict[str, FaultyTransport]
    final: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    """What the server's halves refused or rejected, by sender and reason."""

    @property
    def history(self) -> list[RoundSummary]:
        return self.driver.history


@dataclass
class SitePlan:
    """What one site does besides following the protocol (all optional)."""

    equivocate: bool = False
    """After its update, make and send a second, different one of its own."""
    die_at: int | None = None
    """Stop at this round's start: no answer, no poll (as if killed), until ``rejoin_when``."""
    rejoin_when: Callable[[], bool] | None = None
    """Checked while dead; once true the site reads what waited for it and says hello again."""
    rejoined: Callable[[], None] | None = None
    """Called once the site said hello again."""
    before_submit: Callable[[int], None] | None = None
    """Called with the round number before the site submits."""


def _site_loop(name: str, t: FaultyTransport, mode, decoder, run: Run, plan: SitePlan) -> None:  # type: ignore[no-untyped-def]
    def send(stage: str, payload: bytes, rnd: int) -> None:
        t.send(
            Envelope(
                federation=FED,
                round=rnd,
                stage=stage,
                sender=name,
                receiver=SERVER,
                payload=payload,
            )
        )

    def receive() -> Envelope:
        return receive_from_server(t, site=name, federation=FED, timeout=40)

    try:
        send(m.HELLO, b"", 0)
        while True:
            env = receive()
            if env.stage == m.FINISH:
                run.final[name] = decoder(m.decode(env.payload, m.Finish).model, DIM)
                t.flush()
                return
            if env.stage != m.ROUND_START:
                continue
            if env.round == plan.die_at:
                _play_dead(t, plan)
                send(m.HELLO, b"", 0)
                if plan.rejoined is not None:
                    plan.rejoined()
                continue
            start = m.decode(env.payload, m.RoundStart)
            decoder(start.model, DIM)
            ctx = RoundContext(
                federation=FED,
                round=env.round,
                cohort=start.cohort,
                dimension=DIM,
                max_weight=start.max_weight,
                min_sites=start.min_sites,
                round_digest=round_digest(env.payload, start, decoder),
                run=start.run,  # as the site API builds it
            )
            agg = mode.site(ctx, name)
            send(m.REPORT, m.Report(metrics={"val_accuracy": 0.5}).to_bytes(), env.round)
            # equivocate: a second, validly made update of its own for the same round, sent
            # after the first (made before it, so that the site's half keeps the first as its own)
            if plan.before_submit is not None:
                plan.before_submit(env.round)
            second = (
                mode.site(ctx, name).submit(-update(name, env.round), WEIGHTS[name])
                if plan.equivocate
                else []
            )
            for out in [*agg.submit(update(name, env.round), WEIGHTS[name]), *second]:
                t.send(out)
            while (env := receive()).stage != m.ROUND_END:
                for out in agg.handle(env):
                    t.send(out)
    except BaseException as exc:
        run.errors[name] = exc


def _play_dead(t: Transport, plan: SitePlan) -> None:
    """Neither answer nor poll until ``plan.rejoin_when()``; then drop what waited."""
    assert plan.rejoin_when is not None
    deadline = time.monotonic() + 60
    while not plan.rejoin_when():
        assert time.monotonic() < deadline, "the federation never got to the rejoin point"
        time.sleep(0.05)
    while t.receive(timeout=0.2) is not None:
        pass


def run_federation(
    secure: str,
    tmp_path: Path,
    *,
    faults: dict[str, list[Fault]] | None = None,
    rounds: int = 2,
    equivocate: str | None = None,
    plans: dict[str, SitePlan] | None = None,
    stage_timeout: float = 20.0,
    server: Transport | None = None,
    connect: Callable[[str], Transport] | None = None,
    on_driver: Callable[[ServerDriver], None] | None = None,
) -> Run:
    """Run ``rounds`` rounds of ``secure`` with every site; ``faults`` per site name.

    ``equivocate`` names a site that, after its update, makes and sends a
    second, different one of its own (plain and he: their site halves sign
    or send whatever they are given; mask's round log refuses a second).
    ``plans`` gives other sites' behaviour (:class:`SitePlan`). By default
    the parties meet on a memory hub; ``server`` and ``connect`` (a site
    name to its transport) put them on another transport, and ``on_driver``
    sees the driver before it runs (to install an HTTPS round gate).
    """
    config = FederationConfig(
        name=FED,
        secure=secure,
        rounds=RoundConfig(
            max_rounds=rounds,
            min_sites=3,
            max_weight=MAX_WEIGHT,
            stage_timeout_seconds=stage_timeout,
        ),
        strategy=StrategyConfig(),
    )
    signing = {n: SigningKey.generate() for n in SITES}
    raw = {n: k.export_private(i_understand_this_exports_a_secret=True) for n, k in signing.items()}
    roster = {n: k.public_bytes() for n, k in signing.items()}
    setup = make_setup(
        config,
        signing_keys=raw,
        roster=roster,
        workdir=tmp_path / secure,
        dropouts={},
        max_weight=MAX_WEIGHT,
    )
    hub = MemoryHub()
    quiescent: Callable[[], bool] | None = None
    if server is None:
        server = hub.connect(SERVER)
        quiescent = lambda: hub.quiescent(SERVER)  # noqa: E731
    connect = connect or hub.connect
    violations: list[str] = []
    driver = ServerDriver(
        federation=FED,
        mode=_RecordingMode(setup.server_mode, violations),
        strategy=make_strategy(config.strategy),
        model=setup.global_model(THETA0.copy()),
        spec=SPEC,
        rounds=config.rounds,
        max_weight=MAX_WEIGHT,
        expected_sites=SITES,
        admit=SITES,
    )
    faults = faults or {}
    transports = {n: FaultyTransport(connect(n), list(faults.get(n, []))) for n in SITES}
    run = Run(driver, transports, violations=violations)
    plans = dict(plans or {})
    if equivocate is not None:
        plans[equivocate] = SitePlan(equivocate=True)
    if on_driver is not None:
        on_driver(driver)
    threads = [
        threading.Thread(
            target=_site_loop,
            args=(
                n,
                transports[n],
                setup.site_mode(n),
                setup.decoder(n),
                run,
                plans.get(n, SitePlan()),
            ),
            daemon=True,
        )
        for n in SITES
    ]
    for th in threads:
        th.start()
    run_server(
        driver,
        server,
        stage_timeout=stage_timeout,
        quiescent=quiescent,
        keep_running=lambda: any(th.is_alive() for th in threads),
    )
    for th in threads:
        th.join(timeout=20)
    for t in transports.values():
        t.close()
    return run
