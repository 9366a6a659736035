"""An in-process federation whose sites can be killed at a chosen point and restarted.

What "killed" means here: the site's state folder is copied at the crash
point, *before* anything the dying process would still do (its ``finally``
blocks charge the round, say goodbye): a ``kill -9`` runs none of that. The
restarted site is a new :class:`Site` on the copy, with a new endpoint under
the same name, exactly what ``securefl client`` on the same kit does. The
fault hook is this test-only transport wrapper; nothing ships enabled.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.config import DPConfig, FederationConfig, RoundConfig, StrategyConfig, TrainConfig
from securefl.errors import TransportError
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.sign import SigningKey
from securefl.modes import server_half, site_setup
from securefl.params import ParamSpec, model_vector
from securefl.reports import AuditReport, Roster, audit
from securefl.runtime import ServerDriver, Site, run_server
from securefl.runtime.messages import HELLO
from securefl.strategy import make_strategy
from securefl.transport.base import Transport
from securefl.transport.https_client import RetryPolicy
from securefl.transport.memory import MemoryHub
from securefl.wire import SERVER, Envelope

SITES = ("site-a", "site-b", "site-c")
FAST = RetryPolicy(attempts=5, base=0.001, cap=0.01)


class SiteKilled(BaseException):
    """The process died here (a BaseException: no `except Exception` in the site sees it)."""


@dataclass
class CrashPoint:
    """Kill ``site`` when it sends or receives ``stage`` in ``round`` (or trains in it)."""

    site: str
    action: str  # "send", "receive" or "train"
    stage: str
    round: int
    fired: bool = False

    def matches(self, site: str, action: str, stage: str, round_number: int) -> bool:
        return not self.fired and (site, action, stage, round_number) == (
            self.site,
            self.action,
            self.stage,
            self.round,
        )


class CrashingTransport(Transport):
    """A memory endpoint that dies at the crash point, after a copy of the state folder."""

    def __init__(self, inner: Transport, crash: CrashPoint | None, kill: Callable[[], None]):
        self.name = inner.name
        self.inner = inner
        self._crash = crash
        self._kill = kill

    def _check(self, action: str, env: Envelope) -> None:
        crash = self._crash
        if crash is not None and crash.matches(self.name, action, env.stage, env.round):
            crash.fired = True
            self._kill()
            self.inner.close()
            raise SiteKilled(f"{self.name} killed on {action} {env.stage} round {env.round}")

    def send(self, envelope: Envelope) -> None:
        self._check("send", envelope)
        self.inner.send(envelope)

    def receive(self, timeout: float | None = None) -> Envelope | None:
        env = self.inner.receive(timeout)
        if env is not None:
            self._check("receive", env)
        return env

    def close(self) -> None:
        self.inner.close()


class PausedServer(Transport):
    """The server's endpoint, held while a killed site restarts.

    Why: a real server may open the next round before a restarted site is
    back, and the site then joins the round after; holding the server until
    the site said hello again makes every run take the same path, so the
    test shows what happens at the crash point, not who won a race.
    """

    def __init__(self, inner: Transport, restarting: threading.Event) -> None:
        self.name = inner.name
        self.inner = inner
        self.restarting = restarting
        self.paused = threading.Event()

    def pause(self) -> None:
        """Called by the dying site: returns once the server stands still."""
        self.restarting.set()
        self.paused.wait(timeout=5)

    def send(self, envelope: Envelope) -> None:
        self.inner.send(envelope)

    def receive(self, timeout: float | None = None) -> Envelope | None:
        if self.restarting.is_set():
            self.paused.set()
            while self.restarting.is_set():
                time.sleep(0.002)
            self.paused.clear()
        return self.inner.receive(timeout)

    def close(self) -> None:
        self.inner.close()


class FlakyTransport(Transport):
    """Fails ``failures`` sends of ``stage`` in ``round`` with a TransportError, then works."""

    def __init__(self, inner: Transport, stage: str, round_number: int, failures: int = 1):
        self.name = inner.name
        self.inner = inner
        self.stage, self.round, self.left = stage, round_number, failures

    def send(self, envelope: Envelope) -> None:
        if self.left and (envelope.stage, envelope.round) == (self.stage, self.round):
            self.left -= 1
            raise TransportError(f"{self.name}: connection reset while sending {self.stage}")
        self.inner.send(envelope)

    def receive(self, timeout: float | None = None) -> Envelope | None:
        return self.inner.receive(timeout)

    def close(self) -> None:
        self.inner.close()


def _model() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(3, 2))


@dataclass
class Outcome:
    driver: ServerDriver
    sites: dict[str, Site]  # the last incarnation of each site
    states: dict[str, Path]  # its state folder
    errors: dict[str, BaseException]
    sent: dict[tuple[str, int, str], set[bytes]]  # (sender, round, stage) -> payloads
    kills: int
    roster: Roster
    incarnations: dict[str, int] = field(default_factory=dict)

    def audit_site(self, name: str) -> AuditReport:
        return audit([self.states[name] / "records"], roster=self.roster, no_server_log=True)


def run_federation(
    tmp_path: Path,
    secure: str,
    *,
    crash: CrashPoint | None = None,
    flaky: dict[str, tuple[str, int]] | None = None,
    max_rounds: int = 3,
    server_rounds: int | None = None,
    epsilon: float = 50.0,
    noise_multiplier: float | None = 1.0,
    min_sites: int = 2,
) -> Outcome:
    """Run ``secure`` with three sites; ``crash`` kills one site once, which then restarts."""
    config = FederationConfig(
        name="ward",
        secure=secure,
        dp=DPConfig(epsilon=epsilon, noise_multiplier=noise_multiplier, batch_size=8),
        train=TrainConfig(),
        rounds=RoundConfig(
            max_rounds=max_rounds, min_sites=min_sites, stage_timeout_seconds=20, max_weight=64.0
        ),
        strategy=StrategyConfig(),
    )
    signing = {n: SigningKey.generate() for n in SITES}
    exchange = {n: KeyPair.generate() for n in SITES}
    identity = {n: k.public_bytes() for n, k in signing.items()}
    exchange_keys = {n: k.public_bytes() for n, k in exchange.items()}
    hub = MemoryHub()
    restarting = threading.Event()
    server_transport = PausedServer(hub.connect(SERVER), restarting)
    sent: dict[tuple[str, int, str], set[bytes]] = defaultdict(set)

    def tap(data: bytes) -> None:
        env = Envelope.from_bytes(data)
        sent[(env.sender, env.round, env.stage)].add(env.payload)
        if env.stage == HELLO and crash is not None and crash.fired and env.sender == crash.site:
            restarting.clear()  # the killed site is back

    hub.tap(SERVER, tap)
    half = server_half(
        secure,
        identity_keys=identity,
        federation=config.name,
        strategy=config.strategy,
        max_weight=64.0,
        min_sites=min_sites,
    )
    initial = _model()
    spec = ParamSpec.from_state_dict(initial.state_dict())
    server_config = config.rounds
    if server_rounds is not None:
        server_config = RoundConfig(
            max_rounds=server_rounds, min_sites=min_sites, stage_timeout_seconds=20,
            max_weight=64.0,
        )  # fmt: skip
    driver = ServerDriver(
        federation=config.name,
        mode=half.mode,
        keys=half.keys,
        build_mode=half.build_mode,
        strategy=make_strategy(config.strategy),
        model=half.global_model(model_vector(initial, spec)),
        spec=spec,
        rounds=server_config,
        max_weight=64.0,
        expected_sites=SITES,
    )
    states = {n: tmp_path / n for n in SITES}
    latest: dict[str, Site] = {}
    errors: dict[str, BaseException] = {}
    incarnations: dict[str, int] = defaultdict(int)
    kills = 0

    def build(name: str) -> Site:
        own_half, keys = site_setup(
            secure,
            name=name,
            signing_key=signing[name],
            identity_keys=identity,
            state_dir=states[name],
            federation=config.name,
            strategy=config.strategy,
            max_weight=64.0,
            min_sites=min_sites,
            exchange_key=exchange[name],
            exchange_keys=exchange_keys,
        )

        def kill() -> None:  # what is on disk at the moment of death survives, nothing else
            nonlocal kills
            kills += 1
            server_transport.pause()  # before the site's endpoint goes: nothing sees it gone
            survivor = tmp_path / f"{name}-restart{kills}"
            shutil.copytree(states[name], survivor)
            states[name] = survivor

        transport: Transport = CrashingTransport(hub.connect(name), crash, kill)
        if flaky and name in flaky:
            transport = FlakyTransport(transport, *flaky[name])
        site = Site.for_federation(
            name=name,
            config=config,
            identity_keys=identity,
            signing_key=signing[name],
            state_dir=states[name],
            transport=transport,
            half=own_half,
            keys=keys,
        )
        site.reconnect = FAST
        site._link.reconnect = FAST
        site._link.sleep = lambda _s: None
        site._kill = kill  # type: ignore[attr-defined]
        return site

    def train(site: Site, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        data = TensorDataset(
            torch.randn(32, 3, generator=gen), torch.randint(0, 2, (32,), generator=gen)
        )
        model = _model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        model, opt, loader = site.privatize(model, opt, DataLoader(data, batch_size=8))
        for rnd in site.rounds(model):
            for x, y in loader:
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
                if crash is not None and crash.matches(site.name, "train", "", rnd.number):
                    crash.fired = True
                    site._kill()  # type: ignore[attr-defined]
                    site.transport.close()
                    raise SiteKilled(f"{site.name} killed while training round {rnd.number}")
            rnd.submit(num_examples=32)

    def site_main(name: str, seed: int) -> None:
        while True:
            incarnations[name] += 1
            site = latest[name] = build(name)
            try:
                train(site, seed)
                return
            except SiteKilled:
                continue  # the operator starts `securefl client` again on the same kit
            except BaseException as exc:  # reported below, never hangs the server
                errors[name] = exc
                return

    threads = [
        threading.Thread(target=site_main, args=(n, i), daemon=True) for i, n in enumerate(SITES)
    ]
    for t in threads:
        t.start()
    run_server(
        driver,
        server_transport,
        stage_timeout=20,
        keep_running=lambda: any(t.is_alive() for t in threads),
        quiescent=lambda: hub.quiescent(SERVER),
    )
    for t in threads:
        t.join(timeout=30)
    roster = Roster(federation=config.name, sites=identity)
    return Outcome(driver, latest, states, errors, sent, kills, roster, dict(incarnations))
