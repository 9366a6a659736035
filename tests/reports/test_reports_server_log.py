"""The server's signed round log, and the records held against it.

Each test plays one party: a server that edits or forges its log, a site that
forges the server's log with its own key, a server that sent two sites
different models, a site whose records claim other parameters than the
server announced, a folder whose records were cut short.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from reports_fixtures import Federation, model_hash

from securefl.cli.audit import audit as audit_command
from securefl.errors import DataError, IntegrityError, ProtocolError
from securefl.hazmat.sign import SigningKey
from securefl.reports import Roster, audit
from securefl.reports.server_log import ServerLogWriter, dp_policy, read_server_log

Builder = Callable[..., Federation]


def failing(fed: Federation, **kwargs: object) -> dict[str, list[tuple[str | None, int | None]]]:
    out: dict[str, list[tuple[str | None, int | None]]] = {}
    for f in audit([fed.root], **kwargs).findings:  # type: ignore[arg-type]
        if f.fails:
            out.setdefault(f.code, []).append((f.site, f.round_id))
    return out


@pytest.fixture
def fed(builder: Builder) -> Federation:
    """Two sites, three rounds, with the server's round log and key."""
    return builder({"alpha": 640, "beta": 1280}, server_log=True)


def test_honest_log_passes_and_is_used(fed: Federation) -> None:
    report = audit([fed.root])
    assert report.passed and report.server_log == str(fed.log_path.resolve())
    assert Roster.load(fed.root / "roster.json").server == fed.server_key.public_bytes()


def test_writer_continues_its_chain_and_refuses_what_it_did_not_write(tmp_path: Path) -> None:
    key = SigningKey.generate()
    policy = dp_policy(epsilon=1, delta=1e-5, accountant="prv", local_epochs=1, max_grad_norm=1)
    line = dict(
        status="aggregated",
        cohort=["a", "b"],
        survivors=["a", "b"],
        submitted=["a", "b"],
        model_hash=None,
        max_weight=10.0,
        min_sites=2,
        config={"proximal_mu": 0.0},
        dp=policy,
    )
    ServerLogWriter(tmp_path / "log.jsonl", federation="f", signing_key=key).append(
        round_id=1, **line
    )
    again = ServerLogWriter(tmp_path / "log.jsonl", federation="f", signing_key=key)
    with pytest.raises(ProtocolError):
        again.append(round_id=1, **line)
    again.append(round_id=2, **line)
    again.close(reason="done", max_weight=10.0, min_sites=2, dp=policy)
    with pytest.raises(ProtocolError):  # nothing after the closing line
        again.append(round_id=3, **line)
    log, findings = read_server_log(
        tmp_path / "log.jsonl", federation="f", public_key=key.public_bytes()
    )
    assert findings == [] and log is not None and sorted(log.rounds) == [1, 2] and log.closed
    with pytest.raises(ProtocolError):  # a reopened closed log stays closed
        ServerLogWriter(tmp_path / "log.jsonl", federation="f", signing_key=key).append(
            round_id=3, **line
        )
    with pytest.raises(IntegrityError):  # another key cannot continue this log
        ServerLogWriter(tmp_path / "log.jsonl", federation="f", signing_key=SigningKey.generate())


def test_edited_log_line_is_a_bad_signature(fed: Federation) -> None:
    # the server pretends beta did not survive round 1 after the fact
    log = fed.log_lines()
    log[1]["survivors"] = ["alpha"]
    fed.write_log(log)
    found = failing(fed)
    assert found["server_log_bad_signature"] == [(None, 1)]
    assert found["server_log_invalid"] == [(None, 2)]  # the next line links to the original


def test_log_forged_by_a_site_key_is_a_bad_signature(fed: Federation) -> None:
    # alpha drops its round 1 and forges a log without it, signed with alpha's own key
    recs = fed.lines("alpha")
    fed.rewrite_chain("alpha", [recs[0], recs[2]])
    log = fed.log_lines()
    log[1]["survivors"] = ["beta"]
    alpha = SigningKey.from_private_bytes(fed.keys["alpha"].private_bytes_raw())
    fed.rewrite_log(log, key=alpha)
    found = failing(fed)
    assert set(found) == {"server_log_bad_signature"}
    assert len(found["server_log_bad_signature"]) == 4  # three rounds and the closing line


def test_log_line_removed_breaks_its_chain(fed: Federation) -> None:
    log = fed.log_lines()
    fed.write_log([log[0], log[2]])
    assert failing(fed) == {"server_log_invalid": [(None, 2)]}


def test_log_with_a_duplicate_key_is_invalid(fed: Federation) -> None:
    text = fed.log_path.read_text().splitlines()
    text[0] = text[0].replace('"status":', '"status":"abandoned","status":', 1)
    fed.log_path.write_text("\n".join(text) + "\n")
    assert "server_log_invalid" in failing(fed)


def test_log_without_a_server_key_on_the_roster_fails(fed: Federation) -> None:
    roster = Roster.load(fed.root / "roster.json")
    Roster(roster.federation, roster.sites).save(fed.root / "roster.json")  # version 1
    assert failing(fed) == {"server_not_on_roster": [(None, None)]}


def test_sites_that_received_different_models_fail(fed: Federation) -> None:
    # the server sent beta another model in round 1; beta recorded what it got
    recs = fed.lines("beta")
    recs[1]["model_hash"] = model_hash(99)
    fed.rewrite_chain("beta", recs)
    assert failing(fed) == {"models_differ": [(None, 1)], "model_not_announced": [("beta", 1)]}
    fed.log_path.unlink()  # the roster promises a log: its absence fails by itself
    assert failing(fed) == {"models_differ": [(None, 1)], "server_log_missing": [(None, None)]}
    # audited knowingly without it, the records still disagree with each other
    assert failing(fed, no_server_log=True) == {"models_differ": [(None, 1)]}


def test_record_parameters_other_than_announced_fail(fed: Federation) -> None:
    # alpha claims a higher budget and a larger δ from its first round on: the chain
    # itself is consistent, only the server's announcement shows it
    recs = fed.lines("alpha")
    for rec in recs:
        rec["epsilon_budget"], rec["delta"] = 50.0, 1e-4
        rec["event"]["max_grad_norm"] = 4.0
    fed.rewrite_chain("alpha", recs)
    found = failing(fed)
    assert found == {"parameters_differ": [("alpha", 0), ("alpha", 1), ("alpha", 2)]}
    message = next(f.message for f in audit([fed.root]).findings if f.code == "parameters_differ")
    assert "delta" in message and "epsilon_budget" in message and "max_grad_norm" in message


def test_truncated_records_fail_against_the_log(fed: Federation) -> None:
    # the last record removed: what remains is a valid chain
    fed.write_lines("alpha", fed.lines("alpha")[:2])
    assert failing(fed) == {"records_truncated": [("alpha", 2)]}
    fed.write_lines("beta", [])
    assert failing(fed) == {"records_truncated": [("alpha", 2), ("beta", 0)]}


def test_truncated_records_pass_without_expectations(builder: Builder) -> None:
    fed = builder({"alpha": 640, "beta": 1280})
    fed.write_lines("alpha", fed.lines("alpha")[:2])
    assert failing(fed) == {}


def test_expect_rounds_fails_truncated_records_without_a_log(builder: Builder) -> None:
    fed = builder({"alpha": 640, "beta": 1280})
    fed.write_lines("alpha", fed.lines("alpha")[:2])
    assert failing(fed, expect_rounds=3) == {"records_truncated": [("alpha", None)]}
    assert failing(fed, expect_rounds=2) == {}


def test_expect_rounds_fails_a_truncated_log(fed: Federation) -> None:
    fed.write_log(fed.log_lines()[:2])  # a prefix is still a valid chain, but not closed
    assert failing(fed, expect_rounds=3, still_running=True) == {
        "server_log_truncated": [(None, None)]
    }
    assert failing(fed, expect_rounds=2, still_running=True) == {}
    assert failing(fed, expect_rounds=2) == {"server_log_open": [(None, 1)]}


def test_a_record_beyond_a_closed_log_fails(fed: Federation) -> None:
    # the server closes its log after round 1, yet both sites signed a round 2: the
    # parties disagree (which one lies, the audit cannot tell), so it fails
    log = fed.log_lines()
    fed.rewrite_log([log[0], log[1], log[3]])
    found = {(f.site, f.round_id, f.severity) for f in audit([fed.root]).findings}
    assert {("alpha", 2, "fail"), ("beta", 2, "fail")} <= found
    assert set(failing(fed)) == {"round_not_in_server_log"}


def test_explicit_server_log_flag(fed: Federation, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere.jsonl"
    fed.log_path.rename(moved)
    fed.write_lines("alpha", fed.lines("alpha")[:2])
    runner = CliRunner()
    # the roster names a server key: without its log the audit fails, unless told not to
    result = runner.invoke(audit_command, [str(fed.root), "--json"])
    assert result.exit_code == 1 and '"server_log_missing"' in result.output
    result = runner.invoke(audit_command, [str(fed.root), "--no-server-log", "--json"])
    assert result.exit_code == 0 and '"no_server_log"' in result.output
    result = runner.invoke(audit_command, [str(fed.root), "--server-log", str(moved), "--json"])
    assert result.exit_code == 1 and '"records_truncated"' in result.output
    result = runner.invoke(
        audit_command, [str(fed.root), "--no-server-log", "--expect-rounds", "3", "--json"]
    )
    assert result.exit_code == 1 and '"records_truncated"' in result.output
    missing = runner.invoke(audit_command, [str(fed.root), "--server-log", str(tmp_path / "no")])
    assert missing.exit_code not in (0, 1)


def test_record_for_a_round_the_log_does_not_have_warns(fed: Federation) -> None:
    fed.write_log(fed.log_lines()[:2])
    findings = [f for f in audit([fed.root]).findings if f.code == "round_not_in_server_log"]
    assert {(f.site, f.round_id, f.severity) for f in findings} == {
        ("alpha", 2, "warn"),
        ("beta", 2, "warn"),
    }


def test_log_lines_validate_against_the_json_schema(fed: Federation) -> None:
    import jsonschema

    schema_path = Path(__file__).parents[2] / "docs" / "schema" / "server-round-log-v1.json"
    schema = json.loads(schema_path.read_text())
    lines = fed.log_lines()
    for line in lines:
        jsonschema.validate(line, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dict(lines[0], status="skipped"), schema)


def test_a_swapped_v1_roster_fails_against_the_provisioned_one(fed: Federation) -> None:
    # alpha drops its round 1 and re-signs; whoever holds the folder deletes the log and
    # replaces roster.json with a version 1 roster (no server key): alone, that passes
    # with a warning, which is why the roster must come from provisioning
    provisioned = fed.root.parent / "provisioned-roster.json"
    (fed.root / "roster.json").rename(provisioned)
    roster = Roster.load(provisioned)
    Roster(roster.federation, roster.sites).save(fed.root / "roster.json")
    recs = fed.lines("alpha")
    fed.rewrite_chain("alpha", [recs[0], recs[2]])
    fed.log_path.unlink()
    swapped = audit([fed.root])
    assert swapped.passed and "no_server_log" in {f.code for f in swapped.findings}
    assert swapped.roster_fingerprint != roster.fingerprint()  # what the auditor compares
    assert failing(fed, roster=provisioned) == {"server_log_missing": [(None, None)]}
    result = CliRunner().invoke(audit_command, [str(fed.root), "--roster", str(provisioned)])
    assert result.exit_code == 1 and roster.fingerprint() in result.output.replace("\n", "")


def test_a_roster_with_a_repeated_key_is_refused(fed: Federation) -> None:
    # which of two server keys would be trusted depends on the reader: refuse
    path = fed.root / "roster.json"
    text = path.read_text()
    path.write_text(text.replace('"federation":', '"federation": "other", "federation":', 1))
    with pytest.raises(DataError, match="not a roster"):
        Roster.load(path)


def test_a_sample_rate_below_the_announced_batch_size_fails(fed: Federation) -> None:
    # alpha claims batches of 32 (q = 0.05) where the server announced 64 (q = 0.1): the
    # record is self-consistent (q·n = batch), only the announcement shows it
    recs = fed.lines("alpha")
    for rec in recs:
        rec["expected_batch_size"] = 32
        rec["event"]["sample_rate"] = 32 / 640
    fed.rewrite_chain("alpha", recs)
    found = failing(fed)
    assert found == {"parameters_differ": [("alpha", 0), ("alpha", 1), ("alpha", 2)]}
    message = next(f.message for f in audit([fed.root]).findings if f.code == "parameters_differ")
    assert "sample_rate" in message


def test_a_noise_multiplier_other_than_announced_fails(fed: Federation) -> None:
    # the server fixed σ = 1.2 for everyone; alpha claims it used 3.0 (a far lower ε)
    log = fed.log_lines()
    for entry in log:
        entry["dp"]["noise_multiplier"] = 1.2
    fed.rewrite_log(log)
    assert failing(fed) == {}
    recs = fed.lines("alpha")
    for rec in recs:
        rec["event"]["noise_multiplier"] = 3.0
    fed.rewrite_chain("alpha", recs)
    assert failing(fed) == {"parameters_differ": [("alpha", 0), ("alpha", 1), ("alpha", 2)]}
