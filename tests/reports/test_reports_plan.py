"""`securefl plan`: the flags question, its errors, and the federation dry run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from securefl.cli.plan import plan
from securefl.config import FederationConfig, SiteSpec
from securefl.reports.plan import threat_summary
from securefl.secagg import MaskConfig

BASE = ["--sample-rate", "0.01", "--steps", "1000", "--delta", "1e-5"]


def test_flags_json_prints_epsilon_per_accountant_asked() -> None:
    result = CliRunner().invoke(plan, [*BASE, "--noise-multiplier", "1.1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"rdp", "prv", "pld"}
    # Known ordering: RDP is looser than the numerical accountants, which agree closely.
    assert data["rdp"] > data["pld"]
    assert data["prv"] == pytest.approx(data["pld"], rel=0.02)
    one = CliRunner().invoke(
        plan, [*BASE, "--noise-multiplier", "1.1", "--accountant", "rdp", "--json"]
    )
    assert json.loads(one.stdout) == {"rdp": pytest.approx(data["rdp"])}


def test_epsilon_flag_prints_the_noise_multiplier_that_meets_it() -> None:
    result = CliRunner().invoke(plan, [*BASE, "--epsilon", "2", "--accountant", "rdp", "--json"])
    assert result.exit_code == 0, result.output
    sigma = json.loads(result.stdout)["rdp"]
    check = CliRunner().invoke(
        plan, [*BASE, "--noise-multiplier", str(sigma), "--accountant", "rdp", "--json"]
    )
    eps = json.loads(check.stdout)["rdp"]
    assert eps <= 2.0
    assert eps > 1.95  # calibrated, not merely safe


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--sample-rate", "0", "--sample-rate"),
        ("--sample-rate", "1.5", "--sample-rate"),
        ("--noise-multiplier", "0", "--noise-multiplier"),
        ("--noise-multiplier", "-1", "--noise-multiplier"),
        ("--delta", "0", "--delta"),
        ("--delta", "1", "--delta"),
        ("--steps", "0", "--steps"),
        ("--steps", "ten", "--steps"),
        ("--accountant", "moments", "--accountant"),
    ],
)
def test_invalid_values_give_one_error_line(flag: str, value: str, needle: str) -> None:
    args = dict(zip(BASE[::2], BASE[1::2], strict=True))
    args["--noise-multiplier"] = "1.1"
    args[flag] = value
    result = CliRunner().invoke(plan, [x for kv in args.items() for x in kv])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]
    assert "Traceback" not in result.output


def test_noise_multiplier_and_epsilon_together_are_refused() -> None:
    result = CliRunner().invoke(plan, [*BASE, "--noise-multiplier", "1", "--epsilon", "1"])
    assert result.exit_code == 2 and "exactly one" in result.stderr


FED = """
[federation]
name = "cardio"
secure = "mask"
[dp]
epsilon = 3.0
delta = 1e-5
batch_size = 64
accountant = "rdp"
{extra}
[rounds]
max_rounds = 3
[[sites]]
name = "a"
num_examples = 640
[[sites]]
name = "b"
num_examples = 1280
epsilon = 2.0
"""


def test_federation_plan_json_per_site(tmp_path: Path) -> None:
    path = tmp_path / "fed.toml"
    path.write_text(FED.format(extra=""))
    result = CliRunner().invoke(plan, [str(path), "--accountant", "rdp", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    sites = {s["site"]: s for s in data["sites"]}
    assert sites["a"]["sample_rate"] == 0.1 and sites["a"]["steps_per_round"] == 10
    for name, budget in (("a", 3.0), ("b", 2.0)):
        eps = sites[name]["epsilon_by_round"]["rdp"]
        assert len(eps) == 3 and eps == sorted(eps)
        assert eps[-1] <= budget and eps[-1] > 0.95 * budget  # calibrated to the site's budget
        assert sites[name]["calibrated"] and sites[name]["rounds_allowed"] == 3
    assert data["threat"]["mode"] == "mask" and data["threat"]["threshold"] is None  # 2 < 3 sites
    assert "no masked round can run" in data["threat"]["collusion"]


def test_fixed_noise_multiplier_reports_rounds_allowed(tmp_path: Path) -> None:
    path = tmp_path / "fed.toml"
    path.write_text(FED.format(extra="noise_multiplier = 3.0"))
    data = json.loads(CliRunner().invoke(plan, [str(path), "--accountant", "rdp", "--json"]).stdout)
    site = data["sites"][0]
    assert not site["calibrated"] and site["rounds_allowed"] > 3


def test_site_without_num_examples_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "fed.toml"
    path.write_text(FED.format(extra="").replace("num_examples = 1280\n", ""))
    result = CliRunner().invoke(plan, [str(path), "--accountant", "rdp"])
    assert result.exit_code == 2
    assert "sites.b.num_examples" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("n", "t", "colluders", "drops"),
    [(3, 3, 1, 0), (4, 3, 1, 1), (5, 4, 1, 1), (6, 4, 1, 2), (7, 5, 2, 2), (10, 7, 3, 3)],
)
def test_mask_threat_summary_threshold_colluders_and_dropouts(
    n: int, t: int, colluders: int, drops: int
) -> None:
    """The numbers come from the plan the parties run, over every cohort the server may open.

    Colluders: the least, over cohort sizes a site accepts, of 2t - n' - 1 and
    n' - 2 (at 5 sites a cohort of 4 has t = 3 and withstands one colluder;
    at 3 sites two colluders leave one honest site, whose update is the sum).
    Dropouts: n - t in a round of all n sites.
    """
    config = FederationConfig(secure="mask", sites=tuple(SiteSpec(name=f"s{i}") for i in range(n)))
    summary = threat_summary(config)
    assert summary.threshold == t
    assert f"up to {colluders} colluding sites" in summary.collusion
    if colluders + 1 < n:
        assert f"with {colluders + 1} or more colluding sites" in summary.collusion
    if drops:
        assert summary.dropouts.startswith(f"up to {drops} of {n}")
    else:
        assert summary.dropouts.startswith(f"none: all {n} sites must complete every round")


def test_mask_threat_summary_on_the_regular_graph_names_holders_and_the_dropout_cap() -> None:
    config = FederationConfig(
        secure="mask", sites=tuple(SiteSpec(name=f"s{i}") for i in range(100))
    )
    summary = threat_summary(config)
    plan = MaskConfig(clip=1.0).plan(
        federation="f", round_id=1, cohort=tuple(f"x{i:03d}" for i in range(100))
    )
    assert not plan.complete and summary.threshold == plan.threshold
    assert f"threshold t = {plan.threshold} of {plan.k + 1}" in summary.collusion
    assert f"up to {plan.colluders_tolerated} colluders anywhere in the cohort" in summary.collusion
    assert "placed at random" in summary.collusion  # the 2^-40 bound's assumption is stated
    # the complete-graph rule 2t > n + c is stated only for the cohorts that run it
    assert 2 * plan.threshold <= 100 + MaskConfig(clip=1.0).assumed_colluders(100)
    assert "2t > n + c in a cohort of n <= 64 sites" in summary.collusion
    assert "the k and t of the k-regular graph" in summary.collusion
    tolerance = MaskConfig(clip=1.0).federation_tolerance(100)
    assert f"up to {tolerance} colluding sites" in summary.collusion and tolerance == 33
    assert summary.dropouts.startswith(f"up to {plan.missing_allowed} of 100")


def test_the_mask_threat_summary_follows_the_files_own_mask_settings() -> None:
    """``plan`` states what the federation file's ``[mask]`` runs, not the defaults: eight
    sites with complete_graph_max = 5 are on the k-regular graph, and the neighbourhood
    round is named with what it needs (BLS keys on the roster)."""
    sites = tuple(SiteSpec(name=f"s{i}") for i in range(8))
    mask = MaskConfig(clip=1.0, complete_graph_max=5, dropout_rate=0.0, corrupt_rate=0.0)
    plan = mask.plan(federation="f", round_id=1, cohort=tuple(f"x{i}" for i in range(8)))
    assert not plan.complete
    cohort_wide = threat_summary(FederationConfig(secure="mask", sites=sites, mask=mask))
    assert f"threshold t = {plan.threshold} of {plan.k + 1}" in cohort_wide.collusion
    assert f"up to {mask.federation_tolerance(8)} colluding sites" in cohort_wide.collusion
    assert "neighbourhood round" not in cohort_wide.collusion
    default = threat_summary(FederationConfig(secure="mask", sites=sites))
    assert "threshold t = " in default.collusion and f"of {plan.k + 1}," not in default.collusion
    local = dataclasses.replace(mask, neighbourhood=True)
    summary = threat_summary(FederationConfig(secure="mask", sites=sites, mask=local))
    assert "neighbourhood round" in summary.collusion and "BLS key" in summary.collusion
    assert f"up to {local.federation_tolerance(8)} colluding sites" in summary.collusion


def test_he_and_plain_threat_summaries_say_who_reads_updates() -> None:
    sites = (SiteSpec(name="a"), SiteSpec(name="b"), SiteSpec(name="c"))
    he = threat_summary(FederationConfig(secure="he", sites=sites))
    assert "ciphertexts only" in he.server_sees and "any one site" in he.collusion
    plain = threat_summary(FederationConfig(secure="plain", sites=sites))
    assert "one by one" in plain.server_sees and plain.threshold is None
