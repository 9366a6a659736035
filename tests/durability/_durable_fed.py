"""A federation at the protocol level whose server can be killed and restarted.

The server is a :class:`ServerDriver` with a :class:`ServerState` folder; the
sites are the modes' own site halves (the mask halves keep their round log on
disk, the he halves their decoder's hash chain). Envelopes go through one
queue; "killing" the server drops the driver object and every envelope in
flight, as a ``kill -9`` would. A restarted server is built afresh from the
same folder; each site then says hello again and re-sends its last messages
(a client retrying the POSTs it never saw answered).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from securefl.aggregation.base import RoundContext, SiteAggregator
from securefl.config import RoundConfig, StrategyConfig
from securefl.errors import SecureFLError
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.sign import SigningKey
from securefl.modes import SiteHalf, he_site_keys, server_half, site_half
from securefl.params import ParamSpec
from securefl.reports.server_log import ServerLogWriter, dp_policy, read_server_log
from securefl.runtime import messages as m
from securefl.runtime._site_round import round_digest
from securefl.runtime.server import ServerDriver, ServerStage
from securefl.runtime.server_state import RESTARTED, ServerState
from securefl.strategy import make_strategy
from securefl.wire import SERVER, Envelope

SITES = ("site-a", "site-b", "site-c")
DIM = 4
SPEC = ParamSpec(names=("w",), shapes=((DIM,),), dtypes=("float32",))
STRATEGY = StrategyConfig(name="fedavgm", server_lr=1.0, momentum=0.5)
MAX_WEIGHT = 64.0
FED = "durable"
DP = dp_policy(epsilon=5.0, delta=1e-5, accountant="rdp", local_epochs=1, max_grad_norm=1.0)


def update(site: str, round_id: int) -> np.ndarray:
    """What ``site`` sends in round ``round_id``: depends on both, so a lost round shows."""
    base = np.arange(1, DIM + 1, dtype=np.float32) / 64
    return (base * (SITES.index(site) + 1) * (1 + (round_id % 3))).astype(np.float32)


class ProtoSite:
    """One site's protocol half: answers round starts with ``update`` and follows the stages."""

    def __init__(self, name: str, half: SiteHalf | None, keys: Any = None) -> None:
        self.name = name
        self.half = half
        self.keys = keys
        self.agg: SiteAggregator | None = None
        self.started: list[int] = []  # round ids this site was asked to take part in
        self.ended: dict[int, str] = {}
        self.finished: np.ndarray | None = None
        self.last_sent: list[Envelope] = []

    def hello(self) -> list[Envelope]:
        out = [
            Envelope(
                federation=FED,
                round=0,
                stage=m.HELLO,
                sender=self.name,
                receiver=SERVER,
                payload=b"",
            )
        ]
        if self.keys is not None:
            more, half = self.keys.hello()
            out += more
            self.half = half or self.half
        return out

    def handle(self, env: Envelope) -> list[Envelope]:
        if self.keys is not None and env.stage in self.keys.stages:
            self.half = self.keys.handle(env)
            return []
        assert self.half is not None
        if env.stage == m.ROUND_START:
            start = m.RoundStart.from_bytes(env.payload)
            assert env.round not in self.started, f"{self.name}: round id {env.round} reused"
            self.started.append(env.round)
            self.half.decoder(start.model, DIM)
            ctx = RoundContext(
                federation=FED,
                round=env.round,
                cohort=start.cohort,
                dimension=DIM,
                max_weight=start.max_weight,
                min_sites=start.min_sites,
                round_digest=round_digest(env.payload, start, self.half.decoder),
                run=start.run,  # as the site API builds it
            )
            self.agg = self.half.mode.site(ctx, self.name)
            report = m.Report(metrics={"val_accuracy": 0.5}).to_bytes()
            out = [
                Envelope(
                    federation=FED,
                    round=env.round,
                    stage=m.REPORT,
                    sender=self.name,
                    receiver=SERVER,
                    payload=report,
                )
            ]
            return self._sent(out + self.agg.submit(update(self.name, env.round), 10.0))
        if env.stage == m.ROUND_END:
            self.ended[env.round] = m.RoundEnd.from_bytes(env.payload).status
            self.agg = None
            return []
        if env.stage == m.FINISH:
            self.finished = self.half.decoder(m.Finish.from_bytes(env.payload).model, DIM)
            return []
        if self.agg is None:
            return []
        return self._sent(self.agg.handle(env))

    def _sent(self, out: list[Envelope]) -> list[Envelope]:
        self.last_sent = out
        return out


class Federation:
    """Server (restartable from ``tmp/server``) and three protocol-level sites."""

    def __init__(self, tmp: Path, secure: str, *, max_rounds: int = 3) -> None:
        self.tmp, self.secure = tmp, secure
        self.rounds = RoundConfig(max_rounds=max_rounds, min_sites=3, max_weight=MAX_WEIGHT)
        self.signing = {n: SigningKey.generate() for n in SITES}
        self.identity = {n: k.public_bytes() for n, k in self.signing.items()}
        self.server_key = SigningKey.generate()
        self.identity[SERVER] = self.server_key.public_bytes()
        exchange = {n: KeyPair.generate() for n in SITES}
        self.sites = {n: self._site(n, exchange) for n in SITES}
        self.theta0 = np.zeros(DIM, dtype=np.float32)
        self.queue: deque[Envelope] = deque()
        self.violations: list[str] = []
        self.incarnations = 0
        #: True: this server process dies before it signs its closed rounds into the log
        self.log_paused = False
        self.driver = self.start_server()

    def _site(self, name: str, exchange: dict[str, KeyPair]) -> ProtoSite:
        common: dict[str, Any] = dict(
            name=name,
            signing_key=self.signing[name],
            identity_keys=self.identity,
            state_dir=self.tmp / name,
            federation=FED,
            strategy=STRATEGY,
            max_weight=MAX_WEIGHT,
            min_sites=3,
        )
        (self.tmp / name).mkdir(parents=True, exist_ok=True)
        if self.secure != "he":
            return ProtoSite(name, site_half(self.secure, **common))
        keys = he_site_keys(
            exchange_key=exchange[name],
            exchange_keys={n: k.public_bytes() for n, k in exchange.items()},
            **common,
        )
        return ProtoSite(name, None, keys)

    @property
    def state_dir(self) -> Path:
        return self.tmp / "server"

    def start_server(self) -> ServerDriver:
        """A fresh server process on the state folder: new driver, state attached, log reopened."""
        half = server_half(
            self.secure,
            identity_keys=self.identity,
            federation=FED,
            strategy=STRATEGY,
            max_weight=MAX_WEIGHT,
            min_sites=3,
        )
        driver = ServerDriver(
            federation=FED,
            mode=half.mode,
            keys=half.keys,
            build_mode=half.build_mode,
            strategy=make_strategy(STRATEGY),
            model=half.global_model(self.theta0),
            spec=SPEC,
            rounds=self.rounds,
            max_weight=MAX_WEIGHT,
            expected_sites=SITES,
            admit=SITES,
        )
        state = ServerState(self.state_dir, federation=FED, mode=self.secure, spec=SPEC)
        state.attach(driver)
        self.log = ServerLogWriter(
            self.state_dir / "server_log.jsonl",
            federation=FED,
            signing_key=self.server_key,
            run=state.run_id,
        )
        self.incarnations += 1
        self.driver = driver
        self._log_rounds()
        return driver

    def _log_rounds(self) -> None:
        from securefl.deploy.server import log_new_rounds

        if not self.log_paused:
            log_new_rounds(self.log, self.driver, dp=DP)

    def say_hello(self) -> None:
        for site in self.sites.values():
            self.queue.extend(site.hello())

    def crash_and_restart(self) -> None:
        """kill -9: the driver and everything in flight are gone; sites reconnect and retry."""
        retried = [env for s in self.sites.values() for env in s.last_sent]
        self.queue.clear()
        self.log_paused = False
        self.start_server()
        self.say_hello()
        self.queue.extend(retried)

    def run(
        self,
        crash: Callable[[ServerDriver], bool] | None = None,
        *,
        until: Callable[[ServerDriver], bool] | None = None,
        limit: int = 5000,
    ) -> None:
        """Deliver until the server finished (or ``until``); ``crash(driver)`` true: restart it."""
        steps = 0
        while self.driver.stage is not ServerStage.FINISHED or self.queue:
            steps += 1
            assert steps < limit, "the federation made no progress"
            if until is not None and until(self.driver):
                return
            if crash is not None and crash(self.driver):
                self.crash_and_restart()
                continue
            if not self.queue:
                self.queue.extend(self._server_step(self.driver.advance))
                if not self.queue and self.driver.stage is not ServerStage.FINISHED:
                    self.queue.extend(self._server_step(self.driver.on_deadline))
                continue
            env = self.queue.popleft()
            if env.receiver == SERVER:
                self.queue.extend(self._server_step(lambda e=env: self.driver.handle(e)))
            else:
                self.queue.extend(self.sites[env.receiver].handle(env))
        self._log_rounds()

    def _server_step(self, step: Callable[[], list[Envelope]]) -> list[Envelope]:
        try:
            out = step()
        except SecureFLError as exc:  # what run_server would log and drop
            self.violations.append(str(exc))
            out = []
        self._log_rounds()
        return out


def expected_model(fed: Federation) -> np.ndarray:
    """θ from replaying the strategy over the rounds the history says were aggregated."""
    strategy = make_strategy(STRATEGY)
    theta = fed.theta0.astype(np.float64)
    for summary in fed.driver.history:
        if summary.status == "aggregated":
            mean = np.mean([update(s, summary.round) for s in summary.survivors], axis=0)
            theta = strategy.apply(theta, mean.astype(np.float64), summary.round)
    return theta


def check_run(fed: Federation, crashed_round: int | None, completed: int = 3) -> None:
    """The run finished; each round once everywhere; no id reused; the model is the rounds'."""
    driver = fed.driver
    assert driver.stage is ServerStage.FINISHED and not driver.halted
    assert fed.violations == []
    ids = [h.round for h in driver.history]
    assert ids == sorted(set(ids)), "a round id appears twice in the history"
    journal = [e["round"] for e in fed.driver.journal.journal.entries if e["kind"] == "round"]
    assert journal == ids
    opened = [e["round"] for e in fed.driver.journal.journal.entries if e["kind"] == "opening"]
    assert opened == sorted(set(opened)), "a round id was opened twice"
    for site in fed.sites.values():
        assert site.started == sorted(set(site.started))
    log, findings = read_server_log(
        fed.log.path, federation="durable", public_key=fed.server_key.public_bytes()
    )
    assert findings == [] and log is not None
    assert sorted(log.rounds) == ids
    assert {e["run"] for e in log.rounds.values()} == {driver.run_id}
    assert driver.completed_rounds == completed
    if crashed_round is not None:
        abandoned = driver.history[[h.round for h in driver.history].index(crashed_round)]
        assert (abandoned.status, abandoned.reason) == ("abandoned", RESTARTED)
    expected = expected_model(fed)
    for site in fed.sites.values():
        assert site.finished is not None
        np.testing.assert_allclose(site.finished, expected, rtol=1e-4, atol=1e-5)
