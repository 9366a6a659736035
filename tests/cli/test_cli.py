"""The CLI as a user meets it: one clear line and an exit code, never a traceback."""

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


def test_help_lists_every_command():
    result = _invoke("--help")
    assert result.exit_code == 0
    for name in ("simulate", "audit", "plan"):
        assert name in result.output


def _csv(path, rows, header="age,marker,outcome"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _good_rows(n, shift=0.0):
    return [f"{30 + i % 40},{(i % 7) / 7 + shift:.3f},{'yes' if i % 2 else 'no'}" for i in range(n)]


@pytest.mark.parametrize(
    "args, needle, code",
    [
        (["--epsilon", "0"], "dp.epsilon must be > 0", 2),
        (["--epsilon", "-1"], "dp.epsilon must be > 0", 2),
        (["--delta", "1"], "dp.delta must be < 1", 2),
        (["--epsilon", "1e-9"], "budget too small", 2),
        (["--label", "x"], "--label only applies with --data", 2),
        (["--data", "a.csv", "--label", "y"], "--data expects NAME=PATH.csv", 2),
        (["--he-preset", "bfv-n4096"], "--he-preset only applies", 2),
        (["--dropout", "nobody@update"], "expected SITE@STAGE", 2),
        (["--dropout", "hospital-a@unmask"], "stage must be one of", 2),
    ],
)
def test_bad_options_give_one_clear_line(args, needle, code):
    result = _invoke("simulate", "--rounds", "1", *args)
    assert result.exit_code == code, result.output
    assert needle in result.output
    assert "Traceback" not in result.output


def test_bad_csv_files_are_named_with_their_line(tmp_path):
    good = _csv(tmp_path / "good.csv", _good_rows(40))
    cases = {
        "missing": (tmp_path / "nope.csv", "no such file"),
        "nan": (_csv(tmp_path / "nan.csv", [*_good_rows(20), "40,nan,yes"]), "nan.csv line 22"),
        "text": (
            _csv(tmp_path / "text.csv", ["40,high,yes", *_good_rows(20)]),
            "column 'marker' is not a number: 'high'",
        ),
        "short": (
            _csv(tmp_path / "short.csv", [*_good_rows(15), "40,yes"]),
            "short.csv line 17: expected 3 fields",
        ),
    }
    for path, needle in cases.values():
        result = _invoke(
            "simulate",
            "--rounds",
            "1",
            "--data",
            f"a={good}",
            "--data",
            f"b={path}",
            "--label",
            "outcome",
        )
        assert result.exit_code == 3, result.output
        assert needle in result.output
        assert "Traceback" not in result.output
    result = _invoke("simulate", "--data", f"a={good}", "--data", f"b={good}", "--label", "dx")
    assert result.exit_code == 3 and "no label column 'dx'" in result.output


def test_own_csv_federation_runs_and_writes_summary(tmp_path):
    a = _csv(tmp_path / "a.csv", _good_rows(60))
    b = _csv(tmp_path / "b.csv", _good_rows(60, shift=0.1))
    out = tmp_path / "out"
    own_data = [
        "--data",
        f"ward={a}",
        "--data",
        f"icu={b}",
        "--label",
        "outcome",
        "--out",
        str(out),
    ]
    result = _invoke("simulate", "--rounds", "2", "--batch-size", "16", *own_data)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in summary["sites"]] == ["ward", "icu"]
    assert (out / "records" / "ward.jsonl").exists() and (out / "roster.json").exists()
    again = _invoke("simulate", "--rounds", "1", *own_data)
    assert again.exit_code == 2 and "already holds a simulation" in again.output


def test_default_simulate_json_matches_the_documented_shape(tmp_path):
    result = _invoke("simulate", "--rounds", "2", "--json", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["secure"] == "plain" and summary["rounds"] == 2
    assert set(summary["global"]) == {"accuracy"}
    assert len(summary["sites"]) == 3
    required = {
        "name",
        "num_examples",
        "epsilon",
        "epsilon_budget",
        "delta",
        "local_only_accuracy",
        "federated_accuracy",
    }
    for site in summary["sites"]:
        assert required <= set(site)
        assert site["epsilon"] <= site["epsilon_budget"]
    audit = _invoke("audit", str(tmp_path / "o"), "--json")
    assert audit.exit_code == 0, audit.output


def test_mask_mode_with_a_rehearsed_dropout_from_the_cli():
    result = _invoke(
        "simulate",
        "--secure",
        "mask",
        "--sites",
        "5",
        "--batch-size",
        "16",
        "--rounds",
        "1",
        "--dropout",
        "hospital-b@share",
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["secure"] == "mask"
    assert summary["history"][0]["survivors"] == [
        "hospital-a",
        "hospital-c",
        "hospital-d",
        "hospital-e",
    ]


def test_he_mode_from_the_cli_and_a_bad_preset():
    result = _invoke("simulate", "--secure", "he", "--rounds", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["secure"] == "he"
    bad = _invoke("simulate", "--secure", "he", "--he-preset", "rot13", "--rounds", "1")
    assert bad.exit_code == 2 and "rot13" in bad.output and "Traceback" not in bad.output
