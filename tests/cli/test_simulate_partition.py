"""simulate --sites N --partition dirichlet:ALPHA: many skewed sites, named data."""

import json
import logging

import pytest
from click.testing import CliRunner

from securefl.cli import cli


@pytest.fixture(autouse=True)
def _quiet(caplog):
    caplog.set_level(logging.ERROR, logger="securefl")


def _invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--partition", "iid:1"], "expected dirichlet:ALPHA"),
        (["--partition", "dirichlet:0"], "ALPHA > 0"),
        (["--partition", "dirichlet:1", "--data", "a=a.csv", "--label", "y"], "not with --data"),
        (["--sites", "12"], "--partition dirichlet:ALPHA"),  # the bundled split stops at 10
    ],
)
def test_bad_partition_options_give_one_clear_line(args, needle):
    result = _invoke("simulate", "--rounds", "1", *args)
    assert result.exit_code != 0, result.output
    assert needle in result.output
    assert "Traceback" not in result.output


def test_twelve_sites_run_on_a_named_generated_task(tmp_path):
    result = _invoke(
        "simulate", "--sites", "12", "--partition", "dirichlet:0.5", "--rounds", "1", "--json"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "make_classification" in summary["data"] and "dirichlet:0.5" in summary["data"]
    assert summary["rounds_completed"] == 1
    sites = summary["sites"]
    assert len(sites) == 12 and min(s["num_examples"] for s in sites) >= 32  # one batch each
    assert len({s["num_examples"] for s in sites}) > 1  # sizes, so sample rates, differ
    assert all(s["epsilon"] <= s["epsilon_budget"] for s in sites)


def test_the_bundled_data_is_named_in_the_summary():
    result = _invoke(
        "simulate", "--sites", "4", "--partition", "dirichlet:1", "--rounds", "1", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"].startswith("bundled: Wisconsin")
