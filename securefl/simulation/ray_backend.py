"""``securefl simulate --backend ray``: hundreds of sites, on one machine or a Ray cluster.

The server's driver runs here, in the driver process, exactly as in an
in-process run (:func:`securefl.runtime.loop.run_server` over the same
:class:`~securefl.runtime.server.ServerDriver`); the sites run in
``--workers`` Ray actors, each a :class:`~securefl.simulation.ray_pool.SitePool`
that hosts its share of the sites for the whole run. Every party is built
as a deployment builds it (:mod:`securefl.modes`): the server's half from
the roster's public keys, each site's from its own keys, which never leave
its actor; in ``he`` mode the keymaker site's secret context reaches the
others sealed, through the server. The run folder is laid out as an
in-process run lays it out, so ``summary.json``, the records and
``securefl audit`` read the same.

Without ``--ray-address`` a local Ray starts with the run and stops with it,
also on Ctrl-C or an error; with it, the run joins that cluster and leaves
it running. A Ray already started in this process (a notebook, the tests)
is used as it is and left running.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from securefl.config import DPConfig, FederationConfig, RoundConfig, TrainConfig
from securefl.data.federations import FederatedData
from securefl.errors import AbortError, ConfigError
from securefl.hazmat.sign import SigningKey
from securefl.modes import server_half
from securefl.params import ParamSpec, load_vector_into, model_vector
from securefl.reports import Roster
from securefl.runtime.loop import run_server
from securefl.runtime.server import ServerDriver
from securefl.simulation.modes import needs_bls
from securefl.simulation.noise_plan import site_noise_multipliers
from securefl.simulation.orchestrator import (
    SimulationResult,
    SiteOutcome,
    _seeded_model,
    preflight,
    simulation_result,
)
from securefl.simulation.ray_link import PoolLink
from securefl.simulation.ray_pool import SitePool, SiteReport
from securefl.simulation.run_folder import (
    KEYS_DIR,
    identity_keys,
    private_dir,
    write_outputs,
    write_server_log,
)
from securefl.simulation.trainer import accuracy, default_model
from securefl.strategy.fedavg import make_strategy
from securefl.wire import SERVER

__all__ = ["RayOptions", "RayRun", "ray_session", "run_ray_simulation"]


@dataclass(frozen=True, kw_only=True)
class RayOptions:
    """Where and with what the site pools run (``--ray-address``, ``--workers``, ...)."""

    #: an existing cluster (``ray://HOST:10001``, ``HOST:6379`` or ``auto``); None: a local Ray
    address: str | None = None
    #: site pools (Ray actors); None: one per CPU Ray offers, at most one per site
    workers: int | None = None
    #: CPUs Ray reserves for each pool (its sites take turns on them)
    worker_cpus: float = 1.0
    #: GPUs Ray reserves for each pool (a fraction shares one GPU between pools)
    worker_gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: give at least 1 site pool")
        if not (math.isfinite(self.worker_cpus) and self.worker_cpus > 0):
            raise ConfigError(f"--worker-cpus {self.worker_cpus:g}: give a number above 0")
        if not (math.isfinite(self.worker_gpus) and self.worker_gpus >= 0):
            raise ConfigError(f"--worker-gpus {self.worker_gpus:g}: give 0 or more")


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """Ray for one run: joined (``address``), or started here and shut down however the run ends."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            '--backend ray needs Ray: pip install "securefl[ray]" (or use --backend inprocess)'
        ) from None
    if ray.is_initialized():  # the caller's Ray: theirs to stop
        yield ray
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
    local: dict[str, Any] = {}
    if options.address is None:
        cpus = max(os.cpu_count() or 1, math.ceil((options.workers or 1) * options.worker_cpus))
        local = {"num_cpus": cpus, "include_dashboard": False}
    ray.init(address=options.address, log_to_driver=False, configure_logging=False, **local)
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass
class RayRun:
    """The server side of a Ray-backed run (what the round log is written from)."""

    driver: ServerDriver
    workdir: Path
    federation: str
    server_key: SigningKey
    dp: DPConfig
    train: TrainConfig
    rounds: RoundConfig
    link: PoolLink
    pools: list[Any]
    spec: ParamSpec


def _pools(ray: Any, options: RayOptions, sites: int) -> int:
    """How many pools to start, refused in one line if the cluster cannot place them."""
    offered = ray.cluster_resources()
    cpus, gpus = float(offered.get("CPU", 0)), float(offered.get("GPU", 0))
    workers = min(options.workers or max(1, int(cpus // options.worker_cpus)), sites)
    if workers * options.worker_cpus > cpus:
        raise ConfigError(
            f"--workers {workers} x --worker-cpus {options.worker_cpus:g} needs "
            f"{workers * options.worker_cpus:g} CPUs, Ray offers {cpus:g}; lower either"
        )
    if workers * options.worker_gpus > gpus:
        raise ConfigError(
            f"--workers {workers} x --worker-gpus {options.worker_gpus:g} needs "
            f"{workers * options.worker_gpus:g} GPUs, Ray offers {gpus:g}; lower either"
        )
    return workers


def _split(names: Sequence[str], parts: int) -> list[list[str]]:
    """``names`` in ``parts`` contiguous groups whose sizes differ by at most one."""
    size, extra = divmod(len(names), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        out.append(list(names[start:end]))
        start = end
    return out


def start_pools(
    ray: Any, options: RayOptions, groups: Sequence[Sequence[str]], workdir: Path
) -> list[Any]:
    """One :class:`SitePool` actor per group of sites; each makes its sites' keys itself."""
    actor = ray.remote(SitePool).options(num_cpus=options.worker_cpus, num_gpus=options.worker_gpus)
    return [actor.remote(list(group), str(workdir)) for group in groups]


def start_run(
    ray: Any,
    data: FederatedData,
    config: FederationConfig,
    options: RayOptions,
    workdir: Path,
    *,
    seed: int,
    dropouts: Mapping[str, str],
) -> RayRun:
    """Start the pools, gather the roster from their public keys, and build the server."""
    names = [s.name for s in data.sites]
    groups = _split(names, _pools(ray, options, len(names)))
    (workdir / "records").mkdir(parents=True, exist_ok=True)
    private_dir(workdir / "state")
    pools = start_pools(ray, options, groups, workdir)
    public: dict[str, tuple[bytes, bytes]] = {}
    for keys in ray.get([p.public_keys.remote() for p in pools]):
        public.update(keys)
    bls: dict[str, tuple[bytes, bytes]] | None = None
    if needs_bls(config):  # derived in each pool from its sites' identity keys
        bls = {}
        for pairs in ray.get([p.bls_keys.remote() for p in pools]):
            bls.update(pairs)
    raw = identity_keys(workdir / KEYS_DIR, [SERVER])[SERVER]
    server_key = SigningKey.from_private_bytes(
        raw.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    )
    roster = Roster(
        federation=config.name,
        sites={n: public[n][0] for n in names},
        server=server_key.public_bytes(),
    )
    roster.save(workdir / "roster.json")
    num_classes = len(data.classes)
    initial = _seeded_model(data.num_features, num_classes, seed)
    spec = ParamSpec.from_state_dict(initial.state_dict())
    theta0 = model_vector(initial, spec)
    max_weight = config.rounds.max_weight or float(max(s.num_examples for s in data.sites))
    by_name = {s.name: s for s in data.sites}
    noise = site_noise_multipliers(data, config)
    exchange = {n: public[n][1] for n in names}
    ray.get(
        [
            pool.start.remote(
                config=config,
                identity_keys=roster.sites,
                exchange_keys=exchange,
                data=[by_name[n] for n in group],
                initial=theta0,
                num_classes=num_classes,
                max_weight=max_weight,
                dropouts={n: at for n, at in dropouts.items() if n in group},
                noise={n: noise[n] for n in group if n in noise},
                bls=bls,
            )
            for pool, group in zip(pools, groups, strict=True)
        ]
    )
    half = server_half(
        config.secure,
        identity_keys=roster.sites,
        federation=config.name,
        strategy=config.strategy,
        max_weight=max_weight,
        min_sites=config.rounds.min_sites,
        mask=config.mask,
        he_keymaker=config.he.keymaker,
        bls_roster=bls,
    )
    driver = ServerDriver(
        federation=config.name,
        mode=half.mode,
        keys=half.keys,
        build_mode=half.build_mode,
        strategy=make_strategy(config.strategy),
        model=half.global_model(theta0),
        spec=spec,
        rounds=config.rounds,
        max_weight=max_weight,
        expected_sites=tuple(names),
    )
    placement = {n: i for i, group in enumerate(groups) for n in group}
    return RayRun(
        driver=driver,
        workdir=workdir,
        federation=config.name,
        server_key=server_key,
        dp=config.dp,
        train=config.train,
        rounds=config.rounds,
        link=PoolLink(pools, placement),
        pools=pools,
        spec=spec,
    )


def serve(run: RayRun, on_progress: Callable[[ServerDriver], None] | None = None) -> None:
    """Serve until the run ends; a site's unexpected error stops it and is raised here."""
    import ray

    run_server(
        run.driver,
        run.link,
        keep_running=run.link.keep_running,
        stage_timeout=run.rounds.stage_timeout_seconds,
        on_progress=on_progress,
        quiescent=run.link.quiescent,
    )
    run.link.flush()  # the last messages (finish, or the halt) reach the sites
    ray.get([p.join.remote(run.rounds.stage_timeout_seconds) for p in run.pools])
    if run.link.failure is not None:
        site, error = run.link.failure
        raise AbortError(f"site {site!r} failed in its Ray worker: {error}")


def stop_sites(run: RayRun) -> None:
    """Tell every site the run ends and let its ledger and records settle (best effort)."""
    import ray

    for env in run.driver.stop("the simulation was interrupted"):
        with contextlib.suppress(Exception):
            run.link.send(env)
    with contextlib.suppress(Exception):
        run.link.flush()
        ray.get([p.join.remote(run.rounds.stage_timeout_seconds) for p in run.pools])


def run_ray_simulation(
    data: FederatedData,
    config: FederationConfig,
    *,
    options: RayOptions,
    seed: int = 0,
    out: Path | None = None,
    on_progress: Callable[[ServerDriver], None] | None = None,
    dropouts: dict[str, str] | None = None,
) -> SimulationResult:
    """Run the federation with its sites in Ray actors; what an in-process run returns.

    The same checks as :func:`securefl.simulation.orchestrator.run_simulation`
    run first; ``privacy = "distributed"`` runs in-process only.
    """
    if config.privacy != "local":
        raise ConfigError(
            "--backend ray runs --privacy local; use --backend inprocess for distributed DP"
        )
    preflight(data, config, dropouts or {})
    workdir = out if out is not None else Path(tempfile.mkdtemp(prefix="securefl-ray-"))
    try:
        with ray_session(options) as ray:
            run = start_run(ray, data, config, options, workdir, seed=seed, dropouts=dropouts or {})
            try:
                serve(run, on_progress)
            except BaseException as exc:
                stop_sites(run)
                write_server_log(run, closed=False)
                if out is not None:
                    ctrl_c = isinstance(exc, KeyboardInterrupt)
                    why = "interrupted (Ctrl-C)" if ctrl_c else repr(exc)
                    try:
                        _write(run, data, config, out, interrupted=why, seed=seed)
                    except Exception as failed:  # the first error is the one to report
                        exc.add_note(f"what completed could not be written to {out}: {failed!r}")
                raise
            write_server_log(run, closed=True)
            return _write(run, data, config, out, interrupted="", seed=seed)
    finally:
        if out is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _write(
    run: RayRun,
    data: FederatedData,
    config: FederationConfig,
    out: Path | None,
    *,
    interrupted: str,
    seed: int,
) -> SimulationResult:
    """The result (a finished run trains each site's counterfactual, in its pool) and its files."""
    import ray

    driver, num_classes = run.driver, len(data.classes)
    final = driver.model.plaintext() if driver.completed_rounds else None
    if final is None and driver.completed_rounds:  # he: only the sites could decrypt it
        final = next(
            (p for p in ray.get([p.final_params.remote() for p in run.pools]) if p is not None),
            None,
        )
    model = None
    if final is not None:
        model = default_model(data.num_features, num_classes)
        load_vector_into(model, final, run.spec)
    test = (data.x_test, data.y_test) if data.x_test is not None else None
    calls = [
        p.reports.remote(
            test=test, num_classes=num_classes, seed=seed, counterfactual=not interrupted
        )
        for p in run.pools
    ]
    reports: dict[str, SiteReport] = {r.name: r for batch in ray.get(calls) for r in batch}
    outcomes = [
        SiteOutcome(
            name=s.name,
            num_examples=s.num_examples,
            epsilon=reports[s.name].epsilon,
            epsilon_budget=config.dp.epsilon,
            delta=config.dp.delta,
            noise_multiplier=reports[s.name].noise_multiplier,
            local_only_accuracy=reports[s.name].local_only_accuracy,
            federated_accuracy=accuracy(model, s.x_val, s.y_val) if model else float("nan"),
            local_only_test_accuracy=reports[s.name].local_only_test_accuracy,
            rounds_trained=reports[s.name].rounds_trained,
            error=reports[s.name].error,
        )
        for s in data.sites
    ]
    result = simulation_result(driver, data, config, model, outcomes, interrupted=interrupted)
    if out is not None:
        write_outputs(out, result.summary(), final, run.spec)
    return result
