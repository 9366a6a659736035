"""``securefl plan``: a dry run of a federation file, or one ε question from flags.

Thin on purpose: the logic lives in :mod:`securefl.reports.plan`. Every value
is parsed here (not by click types) so a bad one is reported as one line
naming the flag, with the exit code of :class:`~securefl.errors.ConfigError`.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from securefl.cli._errors import exit_on_error
from securefl.cli._table import new_table
from securefl.cli.audit import json_safe
from securefl.config import ACCOUNTANTS, load_federation
from securefl.errors import BudgetExhaustedError, ConfigError
from securefl.reports.plan import (
    FederationPlan,
    PrivacyModels,
    compare_privacy_models,
    noise_multipliers,
    plan_federation,
    query_epsilons,
)

__all__ = ["plan"]


def _float(flag: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{flag} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{flag} must be finite, got {text!r}")
    return value


def _steps(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--steps must be an integer >= 1, got {text!r}") from None


def _accountants(text: str) -> tuple[str, ...]:
    if text == "all":
        return ACCOUNTANTS
    if text not in ACCOUNTANTS:
        raise ConfigError(f"--accountant must be one of rdp, prv, pld, all; got {text!r}")
    return (text,)


def _print_plan(result: FederationPlan) -> None:
    console = Console()
    delta = ", ".join(sorted({f"{s.delta:g}" for s in result.sites}))
    overview = new_table(
        f"Plan: {result.federation} (mode {result.threat.mode}, δ = {delta})",
        ["site", "examples", "q", "steps", "σ", "ε budget", "rounds", "allowed"],
        names=[s.site for s in result.sites],
        caption="q: Poisson sample rate; steps: DP-SGD steps per round; σ: noise multiplier "
        "(* calibrated so the planned rounds fit the budget); rounds: planned; allowed: "
        "rounds the budget allows (≥: at least)",
    )
    for s in result.sites:
        allowed = (
            f"≥{s.rounds_allowed}" if s.rounds_allowed_is_lower_bound else str(s.rounds_allowed)
        )
        overview.add_row(
            s.site,
            str(s.num_examples),
            f"{s.sample_rate:.3g}",
            str(s.steps_per_round),
            f"{s.noise_multiplier:.3f}" + ("*" if s.calibrated else ""),
            f"{s.epsilon_budget:g}",
            str(s.planned_rounds),
            allowed,
        )
    console.print(overview)
    for s in result.sites:
        table = new_table(
            f"ε after each round: site {s.site} (budget {s.epsilon_budget:g}, "
            f"enforced with {s.accountant})",
            ["round", *s.epsilon_by_round],
        )
        for r in range(s.planned_rounds):
            table.add_row(str(r + 1), *(f"{v[r]:.4f}" for v in s.epsilon_by_round.values()))
        console.print(table)
    t = result.threat
    console.print(f"[bold]Threat summary: mode {t.mode}, {t.num_sites} sites[/]")
    for label, text in (
        ("server sees", t.server_sees),
        ("collusion", t.collusion),
        ("dropouts", t.dropouts),
        ("DP", t.dp),
        *(("note", n) for n in t.notes),
    ):
        console.print(f"  [bold]{label}:[/] {text}")


@click.command("plan")
@click.argument("fed_toml", required=False, type=click.Path(path_type=Path))
@click.option("--sample-rate", default=None, help="Poisson sampling rate q in (0, 1]")
@click.option("--noise-multiplier", default=None, help="noise multiplier sigma > 0")
@click.option(
    "--epsilon", default=None, help="target ε: print the noise multiplier it needs instead"
)
@click.option("--steps", default=None, help="number of DP-SGD steps T >= 1")
@click.option("--delta", default=None, help="δ in (0, 1)")
@click.option(
    "--num-examples",
    default=None,
    type=int,
    help="records at the smallest site: δ must then be below 1/n",
)
@click.option("--accountant", default="all", show_default=True, help="rdp, prv, pld or all")
@click.option(
    "--privacy",
    default="local",
    show_default=True,
    help="local: DP-SGD at each site; both: local next to distributed (Skellam shares)",
)
@click.option("--shares", default="2", show_default=True, help="distributed: t - c honest shares")
@click.option("--dimension", default=None, help="distributed: number of model parameters d")
@click.option(
    "--clip-units",
    default="1024",
    show_default=True,
    help="distributed: the clip norm C in integer units (the scale 1/γ times C)",
)
@click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON only")
@exit_on_error
def plan(
    *,
    privacy: str,
    shares: str,
    dimension: str | None,
    clip_units: str,
    fed_toml: Path | None,
    sample_rate: str | None,
    noise_multiplier: str | None,
    epsilon: str | None,
    steps: str | None,
    delta: str | None,
    num_examples: int | None,
    accountant: str,
    as_json: bool,
) -> None:
    """Dry-run FED.toml (ε per site and round, threat summary), or answer one ε question."""
    flags = {
        "--sample-rate": sample_rate,
        "--noise-multiplier": noise_multiplier,
        "--epsilon": epsilon,
        "--steps": steps,
        "--delta": delta,
        "--num-examples": num_examples,
    }
    given = [k for k, v in flags.items() if v is not None]
    if privacy not in ("local", "both"):
        raise ConfigError(f"--privacy must be local or both, got {privacy!r}")
    if privacy == "both":
        if fed_toml is not None:
            raise ConfigError("--privacy both answers a flags question; drop FED.toml")
        models = _compare(flags, accountant, shares, dimension, clip_units)
        if as_json:
            sys.stdout.write(json.dumps(json_safe(models.to_dict()), indent=2) + "\n")
        else:
            _print_models(models)
        return
    accountants = _accountants(accountant)
    if fed_toml is not None:
        if given:
            raise ConfigError(f"give either FED.toml or flags, not both (got {given[0]})")
        result = plan_federation(load_federation(fed_toml), accountants=accountants)
        if as_json:
            sys.stdout.write(json.dumps(json_safe(result.to_dict()), indent=2) + "\n")
        else:
            _print_plan(result)
        _refuse_unfit(result)
        return
    _answer(
        sample_rate=sample_rate,
        noise_multiplier=noise_multiplier,
        epsilon=epsilon,
        steps=steps,
        delta=delta,
        num_examples=num_examples,
        accountants=accountants,
        as_json=as_json,
    )


def _int(flag: str, text: str | None) -> int:
    if text is None:
        raise ConfigError(f"{flag} is required with --privacy both")
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag} must be an integer, got {text!r}") from None


def _compare(
    flags: Mapping[str, object], accountant: str, shares: str, dimension: str | None, units: str
) -> PrivacyModels:
    """Parse the flags of a side-by-side question and answer it."""
    for flag in ("--sample-rate", "--steps", "--delta"):
        if flags[flag] is None:
            raise ConfigError(f"{flag} is required with --privacy both")
    if accountant == "all":
        accountant = "prv"
    text = {k: v if v is None else str(v) for k, v in flags.items()}
    num = flags["--num-examples"]
    return compare_privacy_models(
        sample_rate=_float("--sample-rate", text["--sample-rate"]) or 0.0,
        steps=_int("--steps", text["--steps"]),
        delta=_float("--delta", text["--delta"]) or 0.0,
        shares=_int("--shares", shares),
        dimension=_int("--dimension", dimension),
        clip_units=_float("--clip-units", units) or 0.0,
        noise_multiplier=_float("--noise-multiplier", text["--noise-multiplier"]),
        target_epsilon=_float("--epsilon", text["--epsilon"]),
        accountant=accountant,
        num_examples=num if isinstance(num, int) else None,
    )


def _print_models(m: PrivacyModels) -> None:
    same = "same noise per site" if m.question == "same_noise" else "same ε"
    table = new_table(
        f"Local vs distributed DP, {same} (q = {m.sample_rate:g}, T = {m.steps}, δ = {m.delta:g})",
        ["", "local DP-SGD", "distributed"],
        caption=f"σ: noise std / clip norm. distributed: Skellam shares summed by secure "
        f"aggregation, t - c = {m.shares} honest shares, d = {m.dimension}, C = "
        f"{m.clip_units:g} integer units (Δ₂ = {m.l2_sensitivity:.6g}); its ε holds while "
        "secure aggregation holds (at most c colluders)",
    )
    table.add_row(
        "σ added by each site", f"{m.local_noise_multiplier:.4g}", f"{m.share_noise_multiplier:.4g}"
    )
    table.add_row(
        "σ in what the server sees",
        f"{m.local_noise_multiplier:.4g} (each update)",
        f"{m.central_noise_multiplier:.4g} (the sum)",
    )
    table.add_row(
        f"ε ({m.accountant} / Skellam RDP)",
        f"{m.local_epsilon:.4g}",
        f"{m.distributed_epsilon:.4g}",
    )
    table.add_row(
        "ε if masking fails",
        f"{m.local_epsilon:.4g} (unchanged)",
        f"{m.masking_failure_epsilon:.4g} (one share)",
    )
    Console().print(table)


def _refuse_unfit(result: FederationPlan) -> None:
    """A plan in which some site cannot train one round is a failed plan: exit non-zero."""
    unfit = [s for s in result.sites if s.rounds_allowed < 1]
    if unfit:
        names = ", ".join(repr(s.site) for s in unfit)
        raise BudgetExhaustedError(
            f"no round fits the budget of site{'s' if len(unfit) > 1 else ''} {names}: one "
            f"round costs more than ε = {unfit[0].epsilon_budget:g}; raise dp.epsilon, give a "
            "larger dp.noise_multiplier (or none, to calibrate it), or lower dp.batch_size"
        )


def _answer(
    *,
    sample_rate: str | None,
    noise_multiplier: str | None,
    epsilon: str | None,
    steps: str | None,
    delta: str | None,
    num_examples: int | None,
    accountants: tuple[str, ...],
    as_json: bool,
) -> None:
    """The flags mode: ε for (q, sigma, T, δ), or the noise multiplier for (q, ε, T, δ)."""
    for flag, value in (("--sample-rate", sample_rate), ("--steps", steps), ("--delta", delta)):
        if value is None:
            raise ConfigError(f"{flag} is required (or give FED.toml)")
    if (noise_multiplier is None) == (epsilon is None):
        raise ConfigError("give exactly one of --noise-multiplier and --epsilon")
    q, d, t = _float("--sample-rate", sample_rate), _float("--delta", delta), _steps(steps)
    assert q is not None and d is not None and t is not None
    if num_examples is None and 0 < q <= 1 and d >= q:  # a bad q gets its own error
        # a batch of at least one record means n >= 1/q, so δ >= q is δ >= 1/n
        raise ConfigError(
            f"--delta {d:g} is not below the sample rate {q:g}, so it is not below 1/n for any "
            "site whose expected batch holds a record: at such a δ one record may be "
            "published in full; use a δ well below 1/n (e.g. 1e-5), or give --num-examples"
        )
    if epsilon is not None:
        target = _float("--epsilon", epsilon)
        assert target is not None
        out = noise_multipliers(
            sample_rate=q,
            target_epsilon=target,
            steps=t,
            delta=d,
            accountants=accountants,
            num_examples=num_examples,
        )
        what = f"noise multiplier for ε = {target:g}"
    else:
        sigma = _float("--noise-multiplier", noise_multiplier)
        assert sigma is not None
        out = query_epsilons(
            sample_rate=q,
            noise_multiplier=sigma,
            steps=t,
            delta=d,
            accountants=accountants,
            num_examples=num_examples,
        )
        what = "ε"
    if as_json:
        sys.stdout.write(json.dumps(json_safe(out)) + "\n")
        return
    table = Table(title=f"{what} (q = {q:g}, T = {t}, δ = {d:g})")
    table.add_column("accountant")
    table.add_column(what, justify="right")
    for acct, number in out.items():
        table.add_row(acct, f"{number:.6g}")
    Console().print(table)
