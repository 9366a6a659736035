"""What ``securefl simulate`` checks and builds before it runs: settings, options, data.

Kept apart from the command itself so that the command reads as what it
does; the Ray backend's options (``--backend``, ``--ray-address``,
``--workers``, ``--worker-cpus``, ``--worker-gpus``) are declared here too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click

from securefl.config import DPConfig, FederationConfig, RoundConfig, load_federation
from securefl.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from securefl.data.federations import FederatedData
    from securefl.simulation.ray_backend import RayOptions

__all__ = [
    "backend_options",
    "check_options",
    "check_out",
    "federation_config",
    "load_data",
    "ray_options",
    "say_what_was_kept",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The options that only the Ray backend reads.
_RAY_OPTIONS = ("ray_address", "workers", "worker_cpus", "worker_gpus")


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT


def backend_options(command: F) -> F:
    """``--backend`` and the Ray options, added to ``command``."""
    for option in reversed(
        [
            click.option(
                "--backend",
                default="inprocess",
                show_default=True,
                type=click.Choice(("inprocess", "ray")),
                help="inprocess: every party in this process. ray: the sites in Ray actors, "
                "each hosting a pool of sites, the server here; for hundreds of sites or a "
                'cluster (needs pip install "securefl[ray]"; docs/scale.md).',
            ),
            click.option(
                "--ray-address",
                default=None,
                metavar="ADDR",
                help="With --backend ray: join this Ray cluster (e.g. auto, HOST:6379, "
                "ray://HOST:10001) instead of starting a local Ray for the run.",
            ),
            click.option(
                "--workers",
                default=None,
                type=click.IntRange(1),
                help="With --backend ray: site pools (Ray actors); default one per CPU Ray "
                "offers, at most one per site.",
            ),
            click.option(
                "--worker-cpus",
                default=1.0,
                show_default=True,
                type=click.FloatRange(0, min_open=True),
                help="With --backend ray: CPUs reserved for each pool.",
            ),
            click.option(
                "--worker-gpus",
                default=0.0,
                show_default=True,
                type=click.FloatRange(0),
                help="With --backend ray: GPUs reserved for each pool (a fraction shares one).",
            ),
        ]
    ):
        command = option(command)
    return command


def ray_options(
    ray_address: str | None, workers: int | None, worker_cpus: float, worker_gpus: float
) -> RayOptions:
    """The Ray backend's settings from its options."""
    from securefl.simulation.ray_backend import RayOptions

    return RayOptions(
        address=ray_address, workers=workers, worker_cpus=worker_cpus, worker_gpus=worker_gpus
    )


#: Each option that sets a federation setting: (table, key) in a federation file.
_SETTINGS: dict[str, tuple[str, str]] = {
    "rounds": ("rounds", "max_rounds"),
    "patience": ("rounds", "patience"),
    "epsilon": ("dp", "epsilon"),
    "delta": ("dp", "delta"),
    "clip": ("dp", "max_grad_norm"),
    "batch_size": ("dp", "batch_size"),
    "lr": ("train", "learning_rate"),
    "epochs": ("train", "local_epochs"),
    "strategy": ("strategy", "name"),
    "secure": ("federation", "secure"),
    "he_preset": ("he", "preset"),
}


def federation_config(ctx: click.Context, config_path: Path | None) -> FederationConfig:
    """The one federation ``simulate`` runs: the file's settings, then the options given.

    Without ``--config`` every option counts (its default included) over the
    settings ``simulate`` always used (federation ``securefl-sim``,
    ``min_sites`` 2, a 120 s stage timeout). With it, only the options given
    on the command line (``ctx.get_parameter_source``) override the file.
    """
    explicit = {
        name
        for name in _SETTINGS
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    }
    if config_path is None:
        base = FederationConfig(
            name="securefl-sim",
            dp=DPConfig(),
            rounds=RoundConfig(min_sites=2, stage_timeout_seconds=120.0),
        )
        explicit = set(_SETTINGS) - ({"he_preset"} - explicit)  # every value, its default too
    else:
        base = load_federation(config_path)
        if base.model.factory is not None:
            raise ConfigError(
                f"{config_path}: model.factory is not used by simulate, which trains its "
                "built-in model; remove it for simulate, or run the federation with "
                "securefl provision"
            )
        base = replace(base, sites=())  # the sites come from --sites or --data
    tables: dict[str, dict[str, Any]] = {}
    for name in explicit:
        table, key = _SETTINGS[name]
        value = ctx.params[name]
        if name == "strategy" and value == "auto":  # he sites replay FedAdam on the aggregates
            value = "fedadam"
        tables.setdefault(table, {})[key] = value
    try:
        return replace(
            base,
            secure=tables.get("federation", {}).get("secure", base.secure),
            dp=replace(base.dp, **tables.get("dp", {})),
            train=replace(base.train, **tables.get("train", {})),
            rounds=replace(base.rounds, **tables.get("rounds", {})),
            strategy=replace(base.strategy, **tables.get("strategy", {})),
            he=replace(base.he, **tables.get("he", {})),
        )
    except ConfigError as exc:
        if config_path is None:
            raise
        raise ConfigError(f"{config_path} with the options given: {exc}") from None


def check_options(
    ctx: click.Context,
    config: FederationConfig,
    out: Path | None,
    *,
    https: bool,
    rehearsal: bool,
    resume: bool,
    backend: str = "inprocess",
) -> None:
    """Refuse a combination of options that cannot run, before any data is read."""
    if backend != "ray":
        given = [f"--{n.replace('_', '-')}" for n in _RAY_OPTIONS if _given(ctx, n)]
        if given:
            raise ConfigError(f"{', '.join(given)} only applies with --backend ray")
    elif https or resume:
        raise ConfigError(
            "--backend ray runs the sites in Ray workers over its own calls: leave out "
            f"{'--transport https' if https else '--resume'} (or use --backend inprocess)"
        )
    if ctx.get_parameter_source("he_preset") is not click.core.ParameterSource.DEFAULT and (
        config.secure != "he"
    ):
        raise ConfigError("--he-preset only applies with --secure he")
    if resume and (out is None or https):
        raise ConfigError("--resume continues a run folder: give its --out (--transport memory)")
    if out is not None:
        from securefl.simulation.run_folder import check_run_folder

        check_run_folder(out, resume=resume)
    if https and rehearsal:
        raise ConfigError(
            "--transport https runs the bundled data without rehearsed dropouts; "
            "leave out --dropout and --data (or use --transport memory)"
        )


@contextlib.contextmanager
def say_what_was_kept(out: Path | None, *, resumable: bool = True) -> Iterator[None]:
    """On Ctrl-C or an error, say where what completed was written (before the error line).

    ``resumable``: the run keeps what ``--resume`` needs (the Ray backend's
    site keys live only in its workers, so its runs cannot be continued).
    """
    try:
        yield
    except BaseException:
        if out is not None and (out / "summary.json").exists():
            then = (
                "; continue it with the same command and --resume"
                if resumable
                else " (a run on Ray cannot be continued: its site keys lived in its workers)"
            )
            click.echo(
                f"stopped: what completed is in {out} (summary.json marked interrupted, the "
                "model of the completed rounds, the records and an open round log: "
                f"securefl audit --still-running {out}){then}",
                err=True,
            )
        raise


def check_out(out: Path) -> None:
    """Refuse an --out that cannot be written, before any training."""
    out.mkdir(parents=True, exist_ok=True)
    probe = out / ".securefl-write-test"
    try:  # a read-only or full folder fails here, not after the training
        probe.write_bytes(b"\0" * 4096)
    finally:
        probe.unlink(missing_ok=True)


def load_data(
    data_specs: tuple[str, ...],
    label: str | None,
    sites: int,
    seed: int,
    schema: Path | None,
    partition: str | None,
    config: FederationConfig,
) -> FederatedData:
    from securefl.data.federations import breast_cancer_federation, csv_federation
    from securefl.data.schema import load_schema
    from securefl.simulation.orchestrator import parse_data_options

    if partition is not None:
        from securefl.data.partition import parse_partition, partitioned_federation

        if data_specs:
            raise ConfigError("--partition splits bundled or generated data; not with --data")
        alpha = parse_partition(partition)
        return partitioned_federation(
            sites=sites, alpha=alpha, seed=seed, batch_size=config.dp.batch_size
        )
    if data_specs:
        if not label:
            raise ConfigError("--data needs --label COLUMN (the label column of the CSV files)")
        declared = None if schema is None else load_schema(schema)
        return csv_federation(
            parse_data_options(data_specs), label=label, seed=seed, schema=declared
        )
    if label or schema:
        raise ConfigError(f"{'--label' if label else '--schema'} only applies with --data")
    return breast_cancer_federation(sites=sites, seed=seed)
