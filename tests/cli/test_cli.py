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
        (["--dropout", "hospital-a@update"], "stage must be one of", 2),
        (["--secure", "plain", "--dropout", "hospital-a@unmask"], "stage must be one of", 2),
        (["--delta", "0.5"], "below 1/n", 2),
        # three masking sites need all three: a rehearsed dropout is refused up front
        (["--dropout", "hospital-b@share"], "--dropout: 1 of 3 sites vanishing", 2),
        (
            [
                "--secure",
                "plain",
                "--dropout",
                "hospital-a@update",
                "--dropout",
                "hospital-b@update",
            ],
            "below min_sites=2",
            2,
        ),
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
    c = _csv(tmp_path / "c.csv", _good_rows(60, shift=0.2))
    two = ["--data", f"ward={a}", "--data", f"icu={b}", "--label", "outcome"]
    refused = _invoke("simulate", "--rounds", "1", "--batch-size", "16", *two)
    assert refused.exit_code == 2, refused.output  # masking needs three sites
    assert "--secure mask cannot run 2 sites" in refused.output
    out = tmp_path / "out"
    own_data = [
        "--data",
        f"ward={a}",
        "--data",
        f"icu={b}",
        "--data",
        f"er={c}",
        "--label",
        "outcome",
        "--out",
        str(out),
    ]
    result = _invoke("simulate", "--rounds", "2", "--batch-size", "16", *own_data)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in summary["sites"]] == ["ward", "icu", "er"]
    assert (out / "records" / "ward.jsonl").exists() and (out / "roster.json").exists()
    again = _invoke("simulate", "--rounds", "1", *own_data)
    assert again.exit_code == 2 and "already holds a finished simulation" in again.output


def test_default_simulate_json_matches_the_documented_shape(tmp_path):
    result = _invoke("simulate", "--rounds", "2", "--json", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["secure"] == "mask" and summary["rounds"] == 2  # secure by default
    assert summary["rounds_completed"] == 2 and summary["halted"] is None
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


def test_plain_mode_must_be_asked_for_and_warns_loudly():
    default = _invoke("simulate", "--rounds", "1")
    assert default.exit_code == 0, default.output
    assert "secure=mask" in default.output and "warning" not in default.output
    plain = _invoke("simulate", "--rounds", "1", "--secure", "plain")
    assert plain.exit_code == 0, plain.output
    assert "warning:" in plain.output and "secure=plain" in plain.output


def test_a_run_in_which_no_round_completes_exits_non_zero_without_a_federated_model(
    tmp_path, monkeypatch
):
    from securefl.simulation import orchestrator

    # rehearse what simulate refuses: two of three sites vanish, the only round is abandoned
    monkeypatch.setattr(orchestrator, "check_dropouts", lambda *a, **k: None)
    out = tmp_path / "o"
    args = ["--secure", "plain", "--rounds", "3", "--out", str(out)]
    drop = ["--dropout", "hospital-a@update", "--dropout", "hospital-b@update"]
    result = _invoke("simulate", *args, *drop)
    assert result.exit_code == 5, result.output
    assert "no round completed" in result.output and "Traceback" not in result.output
    assert "Federated model" not in result.output and "Was joining worth it" not in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds_completed"] == 0 and summary["global"]["accuracy"] is None


def test_a_run_that_stops_early_shows_its_rounds_then_exits_non_zero(monkeypatch):
    from securefl.simulation import orchestrator

    def stopped_after_two(data, config, **kwargs):
        site = orchestrator.SiteOutcome(
            name="hospital-a",
            num_examples=100,
            epsilon=0.4,
            epsilon_budget=1.0,
            delta=1e-5,
            noise_multiplier=3.0,
            local_only_accuracy=0.8,
            federated_accuracy=0.9,
            rounds_trained=2,
        )
        return orchestrator.SimulationResult(
            secure="mask",
            rounds=3,
            rounds_completed=2,
            finish_reason="round 3 cannot open: cohort of 2 is below min_cohort=3",
            halted="round 3 cannot open: cohort of 2 is below min_cohort=3",
            global_accuracy=0.9,
            sites=[site],
        )

    monkeypatch.setattr(orchestrator, "run_simulation", stopped_after_two)
    result = _invoke("simulate", "--rounds", "5")
    assert result.exit_code == 5, result.output
    assert "Was joining worth it?" in result.output  # the two rounds that did complete
    assert "stopped after 2 of 5 rounds: round 3 cannot open" in result.output


def test_own_csv_with_a_declared_schema_and_a_hint_when_nothing_is_learned(tmp_path):
    schema = tmp_path / "schema.toml"
    schema.write_text(
        '[[columns]]\nname = "age"\ntype = "numeric"\nrange = [30, 60]\n\n'
        '[[columns]]\nname = "marker"\ntype = "numeric"\nrange = [0, 1]\n',
        encoding="utf-8",
    )
    sites = []
    for i, name in enumerate(("ward", "icu", "er")):
        path = _csv(tmp_path / f"{name}.csv", _good_rows(60, shift=0.1 * i))
        sites += ["--data", f"{name}={path}"]
    result = _invoke(
        "simulate",
        "--rounds",
        "1",
        "--batch-size",
        "16",
        "--epsilon",
        "0.05",
        *sites,
        "--label",
        "outcome",
        "--schema",
        str(schema),
    )
    assert result.exit_code == 0, result.output
    # ages 30..69 against a declared [30, 60]: each site is told its own clipped count
    assert "outside the schema's declared range were clipped (age:" in result.stderr
    if "hint:" in result.stderr:  # at ε = 0.05 and one round the model rarely learns
        assert "--epsilon" in result.stderr and "--rounds 2" in result.stderr
    refused = _invoke("simulate", "--schema", str(schema))
    assert refused.exit_code == 2 and "--schema only applies with --data" in refused.output
