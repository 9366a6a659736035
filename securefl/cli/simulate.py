"""``securefl simulate``: a whole federation in one process, on bundled or own data."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from securefl._deploy_config import HE_PRESETS
from securefl.cli._errors import exit_on_error
from securefl.cli._privacy import with_privacy
from securefl.cli._simulate_output import print_result, result_table
from securefl.cli._simulate_setup import (
    backend_options,
    check_options,
    check_out,
    federation_config,
    load_data,
    ray_options,
    say_what_was_kept,
)
from securefl.config import SECURE_MODES, STRATEGIES
from securefl.errors import AbortError

TYPE_CHECKING = False
if TYPE_CHECKING:  # the heavy modules load inside the command, so --help is quick
    from securefl.runtime.server import ServerDriver

__all__ = ["result_table", "simulate"]

# Defaults tuned on the bundled data (see docs/privacy.md for how and why).
DEFAULT_ROUNDS = 12
DEFAULT_BATCH = 32
DEFAULT_LR = 1.0
DEFAULT_CLIP = 0.5


@click.command(
    epilog="With --config FED.toml the federation's settings come from that federation "
    "file ([federation] secure, [dp], [train], [rounds], [strategy], [mask], [he]); an "
    "option given on the command line overrides the file's value, and an option not given "
    "takes the file's (or, for a key the file leaves out, the default of "
    "docs/configuration.md), not the default shown here. The sites come from --sites or "
    "--data, never from the file's [[sites]]."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FED.toml",
    help="Take the federation's settings from this federation file (options given "
    "explicitly override it).",
)
@click.option(
    "--rounds",
    default=DEFAULT_ROUNDS,
    show_default=True,
    type=click.IntRange(1),
    help="Federated rounds to run (at most).",
)
@click.option(
    "--sites",
    default=3,
    show_default=True,
    type=click.IntRange(2),
    help="Hospitals to split the data into (ignored with --data): 2 to 10 on the bundled "
    "data; with --partition, more on a generated task (docs/scale.md).",
)
@click.option(
    "--partition",
    default=None,
    metavar="dirichlet:ALPHA",
    help="Split by Dirichlet(ALPHA) label skew (smaller ALPHA, more skew), every site big "
    "enough for one batch; above 10 sites on a generated make_classification task.",
)
@click.option(
    "--epsilon",
    default=1.0,
    show_default=True,
    type=float,
    help="Each site's total privacy budget ε over all rounds.",
)
@click.option("--delta", default=1e-5, show_default=True, type=float, help="Each site's δ.")
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed for the data split and model initialisation (never for DP noise).",
)
@click.option(
    "--strategy",
    default="auto",
    show_default=True,
    type=click.Choice(("auto", *STRATEGIES)),
    help="Server strategy; auto: fedadam (in he mode the sites replay it on the decrypted "
    "aggregates).",
)
@click.option(
    "--secure",
    default="mask",
    show_default=True,
    type=click.Choice(SECURE_MODES),
    help="How updates are protected from the server. mask (default): the server sees only the "
    "sum, even when it cheats with floor((n-1)/3) colluding sites; n sites tolerate n - t "
    "dropouts: none with the default three (t = 3 of 3), 1 of 4 or 5, 2 of 6 or 7 (see "
    "`securefl plan`). he: homomorphic encryption. plain: the server sees each update "
    "(for debugging only).",
)
@click.option(
    "--privacy",
    default=None,
    type=click.Choice(("local", "distributed")),
    help="local (default): DP-SGD with all its noise at each site. distributed: one DP-SGD "
    "step a round over every site's Poisson sample, each site adding a share of Skellam noise "
    "that only the masked sum carries in full (needs --secure mask; docs/distributed_dp.md).",
)
@click.option(
    "--sample-rate",
    default=None,
    type=click.FloatRange(0, 1, min_open=True),
    help="With --privacy distributed: the rate q at which each site samples its records "
    "each round (default 1).",
)
@click.option(
    "--data",
    "data_specs",
    multiple=True,
    metavar="NAME=PATH.csv",
    help="A site's own CSV file (repeat for each site); replaces the bundled data.",
)
@click.option("--label", default=None, help="Label column of the --data CSV files.")
@click.option(
    "--schema",
    "schema_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The federation's declared columns for --data (TOML or JSON: numeric with a range, "
    "categorical with categories); see docs/configuration.md. Without it, own CSVs get only "
    "a signed-log transform.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write summary.json, roster.json, records/ and the final model here.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the interrupted simulation in --out after its last completed round "
    "(give the same options; its ledgers, records and keys go on).",
)
@click.option(
    "--batch-size",
    default=DEFAULT_BATCH,
    show_default=True,
    type=click.IntRange(1),
    help="Expected Poisson batch size at each site.",
)
@click.option(
    "--lr", default=DEFAULT_LR, show_default=True, type=float, help="Local learning rate (SGD)."
)
@click.option(
    "--epochs", default=1, show_default=True, type=click.IntRange(1), help="Local epochs per round."
)
@click.option(
    "--clip",
    default=DEFAULT_CLIP,
    show_default=True,
    type=float,
    help="Per-example gradient clipping norm.",
)
@click.option(
    "--patience",
    default=None,
    type=click.IntRange(1),
    help="Stop when validation accuracy has not improved for this many rounds.",
)
@click.option(
    "--dropout",
    "dropouts",
    multiple=True,
    metavar="SITE@STAGE",
    help="Rehearse SITE vanishing when it would send STAGE (repeatable). Stages: mask: "
    "advertise, share, masked-input, consistency, unmask; plain and he: update. With mask, "
    "the default three sites tolerate no dropout (threshold 3 of 3): the round aborts.",
)
@click.option(
    "--he-preset",
    default=None,
    type=click.Choice(HE_PRESETS),
    help="HE parameters with --secure he (default bfv-n4096).",
)
@click.option(
    "--transport",
    default="memory",
    show_default=True,
    type=click.Choice(("memory", "https")),
    help="memory: every party in this process. https: a provisioned temporary federation run "
    "as one `securefl server` and one `securefl client` process per site over mutual TLS on "
    "127.0.0.1 (a deployment tried on one machine).",
)
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout, nothing else.")
@click.pass_context
@exit_on_error
def simulate(
    ctx: click.Context,
    config_path: Path | None,
    rounds: int,
    sites: int,
    partition: str | None,
    epsilon: float,
    delta: float,
    seed: int,
    strategy: str,
    secure: str,
    data_specs: tuple[str, ...],
    label: str | None,
    schema_path: Path | None,
    out: Path | None,
    resume: bool,
    batch_size: int,
    lr: float,
    epochs: int,
    clip: float,
    patience: int | None,
    dropouts: tuple[str, ...],
    he_preset: str | None,
    transport: str,
    as_json: bool,
    privacy: str | None,
    sample_rate: float | None,
    backend: str,
    ray_address: str | None,
    workers: int | None,
    worker_cpus: float,
    worker_gpus: float,
) -> None:
    """Simulate hospitals training one model together, all in this process.

    With no options: the bundled Wisconsin breast-cancer data (569 patients)
    split into three hospitals that see different tumour sizes, DP-SGD at
    each site with ε = 1, secure aggregation by masking, and a table of what
    each hospital gained. A run that ends before its rounds are done (too
    few sites left to open a round) says why and exits non-zero.
    """
    # Opacus's hook warnings are about its internals, not the user's data
    warnings.filterwarnings("ignore", message="Full backward hook")
    warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
    config = federation_config(ctx, config_path)
    check_options(
        ctx,
        config,
        out,
        https=transport == "https",
        rehearsal=bool(dropouts or data_specs),
        resume=resume,
        backend=backend,
    )
    rounds, secure = config.rounds.max_rounds, config.secure
    if schema_path is None and data_specs and config.data.schema is not None:
        schema_path = Path(config.data.schema)
    data = load_data(data_specs, label, sites, seed, schema_path, partition, config)
    config = with_privacy(
        config, data, privacy=privacy, sample_rate=sample_rate, https=transport == "https"
    )
    from securefl.aggregation.plain import PLAIN_WARNING
    from securefl.simulation.modes import parse_dropouts
    from securefl.simulation.orchestrator import run_simulation
    from securefl.simulation.ray_backend import run_ray_simulation

    dropout_map = parse_dropouts(dropouts, secure, [s.name for s in data.sites])
    if out is not None:
        check_out(out)
    console = Console(stderr=as_json, quiet=as_json)
    for note in data.warnings:
        click.echo(f"warning: {note}", err=True)
    logging.getLogger("securefl").setLevel(logging.ERROR)
    if secure == "plain":
        console.print(f"[bold yellow]warning:[/] {PLAIN_WARNING}")
    with Progress(
        TextColumn("[bold]round {task.completed}/{task.total}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("waiting for sites", total=rounds)

        def on_progress(driver: ServerDriver) -> None:
            done = len(driver.history)
            progress.update(
                task,
                completed=done,
                description=f"round {driver.current_round}: {driver.aggregator_stage}",
            )

        if transport == "https":
            from securefl.simulation.https_run import run_https_simulation

            def on_status(status: dict[str, object], children: object) -> None:
                progress.update(
                    task,
                    completed=max(0, int(str(status.get("round") or 0)) - 1),
                    description=f"round {status.get('round')}: {status.get('stage')} (https)",
                )

            result = run_https_simulation(data, config, seed=seed, out=out, on_status=on_status)
        elif backend == "ray":
            with say_what_was_kept(out, resumable=False):
                result = run_ray_simulation(
                    data,
                    config,
                    options=ray_options(ray_address, workers, worker_cpus, worker_gpus),
                    seed=seed,
                    out=out,
                    on_progress=on_progress,
                    dropouts=dropout_map,
                )
        else:
            with say_what_was_kept(out):
                result = run_simulation(
                    data, config, seed=seed, out=out, on_progress=on_progress, dropouts=dropout_map
                )
    if as_json:
        click.echo(json.dumps(result.summary(), indent=2))
    elif result.trained:
        print_result(console, result, data.x_test is not None, out)
    from securefl.simulation.advice import learned_nothing_hint

    hint = learned_nothing_hint(
        data,
        result.global_accuracy,
        epsilon=config.dp.epsilon,
        rounds=rounds,
        privacy=config.privacy,
        secure=secure,
    )
    if hint is not None:
        click.echo(f"hint: {hint}", err=True)
    if not result.trained:
        raise AbortError(
            f"no round completed ({result.finish_reason}); no federated model was trained"
        )
    if result.halted:
        raise AbortError(
            f"the federation stopped after {result.rounds_completed} of {rounds} rounds: "
            f"{result.halted}"
        )
