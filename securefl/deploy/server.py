"""The coordinator built from its kit: driver, mode, HTTPS transport, signed round log.

Why here and not in the CLI: ``securefl server``, the process-level tests and
``simulate --transport https`` all run the same server, so it is built in one
place. Everything comes from the server's kit (the signed roster for who may
take part, the federation file for the mode and the rounds, the initial model
as safetensors) and nothing here imports torch.

Admission is checked twice: the transport takes an envelope only from a
roster member's pinned certificate, signed with that member's roster key;
the driver then takes messages only from roster names
(:class:`~securefl.runtime.server.ServerDriver` ``admit``), so neither a
stranger nor an impostor can join a cohort, stall or shrink a round.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securefl.config import FederationConfig
from securefl.errors import ConfigError, TransportError
from securefl.modes import ServerHalf, server_half
from securefl.provision.kit import Kit
from securefl.reports.roster import SERVER_ENTRY
from securefl.reports.server_log import (
    SERVER_LOG_NAME,
    ServerLogWriter,
    append_new_rounds,
    dp_policy,
    read_server_log,
)
from securefl.runtime.global_model import PlainGlobalModel
from securefl.runtime.loop import run_server
from securefl.runtime.messages import BYE, HELLO
from securefl.runtime.server import ServerDriver
from securefl.runtime.server_state import ServerState
from securefl.strategy import make_strategy
from securefl.strategy.base import Strategy
from securefl.transport._status import progress_logger
from securefl.transport.https_server import (
    HttpsServerTransport,
    RunningServer,
    body_limit,
    driver_gate,
    serve_files,
)

__all__ = [
    "DeployedServer",
    "ServerOutcome",
    "build_server",
    "log_new_rounds",
    "server_body_limit",
]

log = logging.getLogger("securefl.server")

#: Envelope bytes the he key stage may need beyond the model (the public context
#: with its evaluation keys, signed by the keymaker).
HE_KEY_OVERHEAD = 64 << 20


def server_body_limit(config: FederationConfig, dimension: int) -> int:
    """The largest ``POST /v1/send`` body a site of this federation may need.

    ``plain`` and ``mask`` send 4 bytes per value; ``he`` sends ciphertexts,
    bounded by two polynomials of N 8-byte coefficients per data prime for
    every ``slots`` values, plus the key stage's public context.
    """
    if config.secure != "he":
        return body_limit(dimension=dimension, mode=config.secure)
    from securefl.he._presets import preset_by_name

    preset = preset_by_name(config.he.preset)
    primes = len(preset.coeff_mod_bit_sizes) - 1
    per_value = 2 * preset.poly_modulus_degree * primes * 8 / preset.slots
    return body_limit(
        dimension=dimension, mode="he", bytes_per_value=per_value, overhead=HE_KEY_OVERHEAD
    )


@dataclass(frozen=True)
class ServerOutcome:
    """How a server run ended: rounds aggregated, the reason, and whether it failed."""

    rounds: int
    completed: int
    reason: str
    halted: str = ""
    log_path: Path | None = None
    interrupted: bool = False


@dataclass
class DeployedServer:
    """A server ready to run: call :meth:`run` (serves, drives, logs, stops)."""

    kit: Kit
    driver: ServerDriver
    transport: HttpsServerTransport
    http: RunningServer
    round_log: ServerLogWriter
    stage_timeout: float
    host: str
    state: ServerState

    @property
    def port(self) -> int:
        """The port the server listens on (the one picked when started with port 0)."""
        return self.http.port

    def run(
        self,
        *,
        grace: float = 10.0,
        on_listening: Callable[[str], None] | None = None,
    ) -> ServerOutcome:
        """Serve until the federation ends; every round goes to the signed round log.

        After the last round the server stays up for at most ``grace``
        seconds, until every site has fetched its final message, then stops.
        ``on_listening`` receives the URL once the port accepts connections.
        An interrupt (Ctrl-C) ends the federation: the sites are told, the
        round log is closed.
        """
        self.http.start()
        interrupted = False
        try:
            self._log_rounds()  # rounds a previous process journalled but did not log
            if on_listening is not None:
                on_listening(f"https://{self._host()}:{self.port}")
            try:
                run_server(
                    self.driver,
                    self.transport,
                    stage_timeout=self.stage_timeout,
                    on_progress=self._on_progress,
                )
            except KeyboardInterrupt:
                interrupted = True
                log.warning("interrupted: ending the federation")
                for env in self.driver.stop("the server was stopped by its operator"):
                    try:
                        self.transport.send(env)
                    except TransportError:  # a site taken for gone: the others are still told
                        log.warning("could not tell %s the federation ended", env.receiver)
            self._log_rounds()
            self._close_log()
            self._wait_delivered(grace)
        finally:
            self.transport.close()
            self.http.stop()
        return ServerOutcome(
            rounds=self.driver.current_round,
            completed=self.driver.completed_rounds,
            reason=self.driver.halted or self.driver.finish_reason,
            halted=self.driver.halted,
            log_path=self.round_log.path,
            interrupted=interrupted,
        )

    def _host(self) -> str:
        wildcard = ("0.0.0.0", "::")  # noqa: S104
        return self.host if self.host not in wildcard else "127.0.0.1"

    def _policy(self) -> dict[str, object]:
        cfg = self.kit.federation
        return dp_policy(
            epsilon=cfg.dp.epsilon,
            delta=cfg.dp.delta,
            accountant=cfg.dp.accountant,
            local_epochs=cfg.train.local_epochs,
            max_grad_norm=cfg.dp.max_grad_norm,
            batch_size=cfg.dp.batch_size,
            noise_multiplier=cfg.dp.noise_multiplier,
            max_rounds=cfg.rounds.max_rounds,
        )

    def _on_progress(self, driver: ServerDriver) -> None:
        """One log line per stage change; each closed round signed into the round log."""
        progress_logger(driver)
        self._log_rounds()

    def _log_rounds(self) -> None:
        log_new_rounds(self.round_log, self.driver, dp=self._policy())

    def _close_log(self) -> None:
        self.round_log.close(
            reason=self.driver.halted or self.driver.finish_reason or "the run ended",
            max_weight=self.driver.max_weight,
            min_sites=self.kit.federation.rounds.min_sites,
            dp=self._policy(),
        )

    def _wait_delivered(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        sites = self.kit.roster.site_names
        while time.monotonic() < deadline:
            if all(self.transport.delivered(s) for s in sites):
                return
            time.sleep(0.05)
        waiting = [s for s in sites if not self.transport.delivered(s)]
        log.info("stopping; %s did not fetch the last message", ", ".join(waiting))


def log_new_rounds(writer: ServerLogWriter, driver: ServerDriver, *, dp: dict[str, Any]) -> int:
    """Sign into the round log every closed round it does not hold yet; return how many."""
    return append_new_rounds(writer, driver.history, dp=dp)


def _server_half(kit: Kit, dimension: int) -> tuple[ServerHalf, Strategy]:
    """The mode's server half and the strategy, for either privacy model.

    With ``privacy = "distributed"`` the half is SecAgg+ on the integer path
    in the plan's ring, and the strategy divides the unmasked sum by the
    public expected batch size before the federation's optimizer step
    (:class:`~securefl.runtime._distributed.DistributedStep`). The plan comes
    from the kit's federation file, its model's size and its roster's, the
    same numbers every site derives from its own kit.
    """
    cfg = kit.federation
    identity = kit.roster.identity_keys()
    if cfg.privacy == "distributed":
        from securefl.runtime._distributed import (
            DistributedPlan,
            DistributedStep,
            distributed_server_mode,
        )

        plan = DistributedPlan.from_config(
            cfg, dimension=dimension, federation_size=len(kit.roster.site_names)
        )
        half = ServerHalf(
            distributed_server_mode(plan, identity, bls_roster=kit.bls_roster()), PlainGlobalModel
        )
        return half, DistributedStep(make_strategy(cfg.strategy), plan)
    half = server_half(
        cfg.secure,
        identity_keys=identity,
        federation=cfg.name,
        strategy=cfg.strategy,
        max_weight=kit.max_weight,
        min_sites=cfg.rounds.min_sites,
        mask=cfg.mask,
        he_keymaker=cfg.he.keymaker,
        bls_roster=kit.bls_roster(),  # the neighbourhood round's BLS keys, or None
    )
    return half, make_strategy(cfg.strategy)


def build_server(
    kit_path: str | Path,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str = "warning",
) -> DeployedServer:
    """The server of the federation whose server kit is at ``kit_path``.

    ``host`` and ``port`` override the federation file's ``server.bind`` and
    ``server.port`` (``port=0`` picks a free port; read it from
    :attr:`DeployedServer.port`). The state folder (the signed round log,
    a copy of the auditor's roster, the journal and checkpoints of
    :class:`~securefl.runtime.server_state.ServerState`) is created in the
    kit; started again on it, the server resumes after the last completed
    round.
    """
    kit = Kit.load(kit_path, kind="server")
    cfg = kit.federation
    identity = kit.roster.identity_keys()
    sites = kit.roster.site_names
    bind = host if host is not None else cfg.server.bind
    log_path = kit.state_dir / SERVER_LOG_NAME
    if log_path.exists():
        previous, _ = read_server_log(
            log_path, federation=cfg.name, public_key=identity[SERVER_ENTRY]
        )
        if previous is not None and previous.closed:
            raise ConfigError(
                f"kit {kit.path}: {log_path} holds a finished run; move the state folder "
                "away (keep it for the audit) to start a new run"
            )
    spec = kit.spec
    half, strategy = _server_half(kit, spec.size)
    driver = ServerDriver(
        federation=cfg.name,
        mode=half.mode,
        keys=half.keys,
        build_mode=half.build_mode,
        strategy=strategy,
        model=half.global_model(kit.initial_params()),
        spec=spec,
        rounds=cfg.rounds,
        max_weight=kit.max_weight,
        expected_sites=sites,
        admit=sites,
    )
    state = ServerState(kit.state_dir, federation=cfg.name, mode=cfg.secure, spec=spec)
    state.attach(driver)
    transport, http = serve_files(
        federation=cfg.name,
        ca=kit.ca_cert_path,
        cert=kit.cert_path,
        key=kit.key_path,
        crl=kit.crl_path,
        identity_key=kit.path / "identity.key.pem",
        site_keys={name: identity[name] for name in sites},
        site_cert_sha256={name: kit.roster.cert_sha256(name) for name in sites},
        max_body=server_body_limit(cfg, spec.size),
        status_token=kit.status_token_path,
        host=bind,
        port=port if port is not None else cfg.server.port,
        log_level=log_level,
    )
    anytime = (HELLO, BYE, *sorted(half.keys.stages)) if half.keys is not None else (HELLO, BYE)
    transport.set_gate(driver_gate(driver, anytime=anytime))
    kit.roster.audit_roster().save(kit.state_dir / "roster.json")  # for `securefl audit`
    round_log = ServerLogWriter(
        log_path, federation=cfg.name, signing_key=kit.signing_key(), run=state.run_id
    )
    if (round_log.last_round or 0) > driver.current_round:
        raise ConfigError(
            f"{log_path} logs round {round_log.last_round}, but the state folder's journal "
            f"ends at round {driver.current_round}: restore the whole state folder from one backup"
        )
    return DeployedServer(
        kit=kit,
        driver=driver,
        transport=transport,
        http=http,
        round_log=round_log,
        stage_timeout=cfg.rounds.stage_timeout_seconds,
        host=bind,
        state=state,
    )
