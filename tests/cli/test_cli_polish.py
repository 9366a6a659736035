"""What a user meets in the first hour: one line per error, tables that fit, docs that match."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from securefl.cli import cli
from securefl.cli.simulate import result_table
from securefl.config import load_federation
from securefl.errors import ConfigError
from securefl.simulation import SimulationResult, SiteOutcome
from securefl.simulation.orchestrator import parse_data_options

ROOT = Path(__file__).resolve().parents[2]
LONG_NAMES = ["university-hospital-n", "st-mary-oncology-ward", "children-hospital-east"]


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="securefl")


def _invoke(*args: str) -> Result:
    # not a terminal: rich then renders at 80 columns, as when piped
    return CliRunner(env={"COLUMNS": "80"}).invoke(cli, list(args), catch_exceptions=False)


def _one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0]


# -- no traceback anywhere ----------------------------------------------------------


def test_an_out_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = _invoke("simulate", "--rounds", "1", "--out", str(blocker / "run"))
    line = _one_error_line(result)
    assert str(blocker) in line and result.exit_code == 3


def test_a_full_out_folder_is_one_line_before_any_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    trained = []
    monkeypatch.setattr(
        "securefl.simulation.orchestrator.run_simulation", lambda *a, **k: trained.append(1)
    )
    result = _invoke("simulate", "--rounds", "1", "--out", str(tmp_path / "out"))
    assert "No space left on device" in _one_error_line(result)
    assert result.exit_code == 3 and trained == []


def test_a_bug_is_one_line_that_says_how_to_see_the_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("oops")

    monkeypatch.setattr("securefl.simulation.orchestrator.run_simulation", broken)
    result = _invoke("simulate", "--rounds", "1")
    line = _one_error_line(result)
    assert "KeyError" in line and "SECUREFL_TRACEBACK=1" in line and result.exit_code == 70
    monkeypatch.setenv("SECUREFL_TRACEBACK", "1")
    with pytest.raises(KeyError):
        _invoke("simulate", "--rounds", "1")


# -- tables at 80 columns, piped ------------------------------------------------------


def _assert_fits_and_names_whole(text: str, names: list[str], cells: dict[str, int]) -> None:
    assert "…" not in text, text
    assert all(len(line) <= 80 for line in text.splitlines()), text
    for name in names:  # each name whole, on one line
        assert any(name in line for line in text.splitlines()), (name, text)
    for cell, times in cells.items():  # nothing cropped at the right edge either
        assert text.count(cell) == times, (cell, text)


def test_simulate_table_fits_80_columns_with_long_site_names() -> None:
    sites = [
        SiteOutcome(
            name=name,
            num_examples=1234,
            epsilon=0.999,
            epsilon_budget=1.0,
            delta=1e-5,
            noise_multiplier=3.1,
            local_only_accuracy=0.933,
            federated_accuracy=0.967,
            rounds_trained=12,
            local_only_test_accuracy=0.851,
        )
        for name in LONG_NAMES
    ]
    result = SimulationResult(
        secure="mask",
        rounds=12,
        finish_reason="reached max_rounds=12",
        global_accuracy=0.956,
        sites=sites,
        rounds_completed=12,
    )
    buffer = io.StringIO()
    Console(file=buffer, width=80, force_terminal=False).print(result_table(result, True))
    _assert_fits_and_names_whole(
        buffer.getvalue(), LONG_NAMES, {"0.999 / 1": 3, "+0.034": 3, "+0.105": 3, "test set": 1}
    )


def _fed_toml(tmp_path: Path, names: list[str], epsilon: float = 1.0, extra: str = "") -> Path:
    sites = "".join(f'[[sites]]\nname = "{n}"\nnum_examples = 400\n' for n in names)
    path = tmp_path / "fed.toml"
    path.write_text(
        f'[federation]\nname = "fed"\n[dp]\nepsilon = {epsilon}\nbatch_size = 32\n{extra}'
        f"[rounds]\nmax_rounds = 3\n{sites}",
        encoding="utf-8",
    )
    return path


def test_plan_tables_fit_80_columns_with_long_site_names(tmp_path: Path) -> None:
    result = _invoke("plan", str(_fed_toml(tmp_path, LONG_NAMES)))
    assert result.exit_code == 0, result.output
    _assert_fits_and_names_whole(result.stdout, LONG_NAMES, {"allowed": 1, "ε after each": 3})
    assert "(calibrated)" not in result.stdout and "2." in result.stdout  # σ, whole


# -- plan: no round fits ----------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True])
def test_plan_exits_non_zero_when_no_round_fits_the_budget(tmp_path: Path, as_json: bool) -> None:
    toml = _fed_toml(tmp_path, ["a", "b", "c"], epsilon=0.01, extra="noise_multiplier = 0.5\n")
    result = _invoke("plan", str(toml), *(["--json"] if as_json else []))
    assert result.exit_code == 4
    assert "no round fits the budget of sites 'a', 'b', 'c'" in _one_error_line(result)
    if as_json:  # the plan itself is still printed, and still one JSON document
        assert all(s["rounds_allowed"] == 0 for s in json.loads(result.stdout)["sites"])


def test_plan_exits_zero_when_rounds_fit(tmp_path: Path) -> None:
    assert _invoke("plan", str(_fed_toml(tmp_path, ["a", "b", "c"])), "--json").exit_code == 0


# -- site names: one rule everywhere ----------------------------------------------------


@pytest.mark.parametrize("bad", ["a b", "../up", "a/b", "x" * 65, "é!"])
def test_a_bad_site_name_gets_the_same_message_from_the_cli_and_toml(
    tmp_path: Path, bad: str
) -> None:
    result = _invoke("simulate", "--data", f"{bad}=x.csv", "--label", "y")
    assert result.exit_code == 2
    cli_line = _one_error_line(result)
    with pytest.raises(ConfigError) as info:
        load_federation(_fed_toml(tmp_path, [bad]))
    rule = f"site name {bad!r} must be 1 to 64 letters, digits, '-' or '_'"
    assert rule in cli_line and rule in str(info.value)


def test_a_duplicate_site_name_gets_its_own_message_everywhere(tmp_path: Path) -> None:
    result = _invoke("simulate", "--data", "a=x.csv", "--data", "a=y.csv", "--label", "y")
    assert "site name 'a' appears twice" in _one_error_line(result)
    with pytest.raises(ConfigError, match="site name 'a' appears twice"):
        load_federation(_fed_toml(tmp_path, ["a", "b", "a"]))
    # names that differ only in case would share a record file on some disks
    with pytest.raises(ConfigError, match="differ only in case"):
        parse_data_options(["Ward=x.csv", "ward=y.csv"])


# -- docs match what simulate prints ----------------------------------------------------


def _doc_columns(path: Path, after: str) -> list[str]:
    """First column of the first `| column | meaning |` table after heading ``after``."""
    text = path.read_text(encoding="utf-8")
    text = text[text.index(after) :]
    block = text[text.index("| column | meaning |") :].split("\n\n")[0]
    return [row.split("|")[1].strip() for row in block.splitlines()[2:]]


def _result() -> SimulationResult:
    return SimulationResult(
        secure="mask",
        rounds=1,
        finish_reason="",
        global_accuracy=0.9,
        rounds_completed=1,
        sites=[
            SiteOutcome(
                name="a",
                num_examples=1,
                epsilon=1,
                epsilon_budget=1,
                delta=1e-5,
                noise_multiplier=1,
                local_only_accuracy=1,
                federated_accuracy=1,
                rounds_trained=1,
            )
        ],
    )


def _printed_columns() -> list[str]:
    return [" ".join(str(c.header).split()) for c in result_table(_result(), True).columns]


def test_quickstart_and_cli_docs_name_the_columns_simulate_prints() -> None:
    printed = _printed_columns()
    assert _doc_columns(ROOT / "docs" / "cli.md", "### Output") == printed
    assert _doc_columns(ROOT / "docs" / "quickstart.md", "# Quickstart") == printed
    # the README's sample output has the header simulate prints at 80 columns
    buffer = io.StringIO()
    Console(file=buffer, width=80, force_terminal=False).print(result_table(_result(), True))
    rendered = [line.rstrip() for line in buffer.getvalue().splitlines()]
    header = rendered[rendered.index(next(x for x in rendered if x.startswith("site"))) - 1 :][:2]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sample = readme[readme.index("## What `simulate` shows") :].split("```")[1]
    assert "\n".join(" ".join(x.split()) for x in header) in "\n".join(
        " ".join(x.split()) for x in sample.splitlines()
    )


def test_a_reader_that_closes_the_pipe_gets_no_error_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def closed(*args: object) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr("securefl.cli.plan._print_plan", closed)
    result = _invoke("plan", str(_fed_toml(tmp_path, ["a", "b", "c"])))
    assert result.exit_code == 3 and result.stderr == ""
