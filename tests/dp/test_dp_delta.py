"""δ and ε sanity: ε is never negative, δ must be below 1/n, and plan and the ledger say so."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from securefl.cli.plan import plan
from securefl.dp import ACCOUNTANTS, DPEvent, PrivacyLedger, check_delta, epsilon
from securefl.errors import ConfigError
from securefl.reports.plan import query_epsilons


def ev(sigma: float, q: float, steps: int) -> DPEvent:
    return DPEvent(
        noise_multiplier=sigma, sample_rate=q, steps=steps, max_grad_norm=1.0, secure_rng=True
    )


@pytest.mark.parametrize("accountant", ACCOUNTANTS)
@pytest.mark.parametrize("delta", [0.3, 0.5, 0.9])
def test_epsilon_is_never_negative(accountant: str, delta: float) -> None:
    # A large δ makes the accountants' conversions go below 0; a mechanism
    # cannot be "more than perfectly" private, so the report is 0.
    assert epsilon([ev(8.0, 0.01, 10)], delta=delta, accountant=accountant) >= 0.0


def test_plan_question_never_reports_a_negative_epsilon() -> None:
    out = query_epsilons(sample_rate=0.01, noise_multiplier=8.0, steps=10, delta=0.5)
    assert all(v >= 0.0 for v in out.values())


def test_delta_of_one_over_n_or_more_is_refused() -> None:
    assert check_delta(1e-5, num_examples=1000) == 1e-5
    for delta in (1 / 1000, 0.01, 0.5):
        with pytest.raises(ConfigError, match="1/n") as info:
            check_delta(delta, num_examples=1000)
        assert "dp.delta" in str(info.value)
    for delta in (0.0, 1.0, -1e-5, math.nan, math.inf, True):
        with pytest.raises(ConfigError, match=r"dp\.delta"):
            check_delta(delta)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="records"):
        check_delta(1e-5, num_examples=0)


def test_ledger_and_accountants_refuse_delta_outside_zero_one(tmp_path: Path) -> None:
    for delta in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match="delta"):
            epsilon([ev(1.0, 0.01, 10)], delta=delta)
        with pytest.raises(ConfigError, match="delta"):
            PrivacyLedger(tmp_path / "l.sqlite", site="a", epsilon_budget=1.0, delta=delta)


FED = """
[federation]
name = "cardio"
[dp]
epsilon = 3.0
delta = {delta}
batch_size = 64
accountant = "rdp"
[rounds]
max_rounds = 2
[[sites]]
name = "big"
num_examples = 5000
[[sites]]
name = "small"
num_examples = 640
"""


def test_plan_refuses_a_delta_above_one_over_the_smallest_site(tmp_path: Path) -> None:
    path = tmp_path / "fed.toml"
    path.write_text(FED.format(delta=0.5))
    result = CliRunner().invoke(plan, [str(path), "--accountant", "rdp"])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "1/n" in line and "dp.delta" in line
    # Each site's own n counts: δ below 1/640 but not below 1/5000 fails on the big site.
    path.write_text(FED.format(delta=1 / 1000))
    result = CliRunner().invoke(plan, [str(path), "--accountant", "rdp"])
    assert result.exit_code == 2 and "'big'" in result.stderr and "n = 5000" in result.stderr
    path.write_text(FED.format(delta=1e-5))
    ok = CliRunner().invoke(plan, [str(path), "--accountant", "rdp", "--json"])
    assert ok.exit_code == 0, ok.output
    for site in json.loads(ok.stdout)["sites"]:
        assert all(e >= 0 for e in site["epsilon_by_round"]["rdp"])


def test_plan_question_with_a_dataset_size_refuses_a_large_delta() -> None:
    base = ["--sample-rate", "0.01", "--steps", "100", "--noise-multiplier", "1.0"]
    bad = CliRunner().invoke(plan, [*base, "--delta", "0.5", "--num-examples", "600"])
    assert bad.exit_code == 2 and "1/n" in bad.stderr and "--delta" in bad.stderr
    good = CliRunner().invoke(
        plan, [*base, "--delta", "1e-5", "--num-examples", "600", "--accountant", "rdp", "--json"]
    )
    assert good.exit_code == 0, good.output


def test_plan_flags_refuse_a_delta_not_below_the_sample_rate() -> None:
    """Without --num-examples, δ >= q already means δ >= 1/n (a batch holds a record)."""
    flags = ["--sample-rate", "0.1", "--noise-multiplier", "1", "--steps", "10"]
    refused = CliRunner().invoke(plan, [*flags, "--delta", "0.5"])
    assert refused.exit_code == 2 and "1/n" in refused.stderr
    assert refused.stdout == ""  # no ε printed for a δ that protects no one
    ok = CliRunner().invoke(plan, [*flags, "--delta", "0.05", "--accountant", "rdp", "--json"])
    assert ok.exit_code == 0, ok.output
    # with the site's size given, the exact 1/n rule applies instead
    sized = CliRunner().invoke(plan, [*flags, "--delta", "0.5", "--num-examples", "100"])
    assert sized.exit_code == 2 and "n = 100" in sized.stderr
