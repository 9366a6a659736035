"""Each tampering with signed records is caught by the audit, with site and round."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from reports_fixtures import Federation, raw_public

from securefl.cli.audit import audit as audit_command
from securefl.reports import Roster, audit


def codes(fed: Federation, **kwargs: object) -> dict[str, list[tuple[str | None, int | None]]]:
    report = audit([fed.root], **kwargs)  # type: ignore[arg-type]
    out: dict[str, list[tuple[str | None, int | None]]] = {}
    for f in report.findings:
        out.setdefault(f.code, []).append((f.site, f.round_id))
    return out


def failing(fed: Federation) -> set[str]:
    return {f.code for f in audit([fed.root]).findings if f.fails}


def test_honest_federation_passes_with_exit_zero(federation: Federation) -> None:
    assert failing(federation) == set()
    result = CliRunner().invoke(audit_command, [str(federation.root)])
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output


def test_edited_epsilon_breaks_the_signature(federation: Federation) -> None:
    recs = federation.lines("alpha")
    recs[1]["epsilon"] = recs[1]["epsilon"] / 2
    federation.write_lines("alpha", recs)
    found = codes(federation)
    assert ("alpha", 1) in found["bad_signature"]
    result = CliRunner().invoke(audit_command, [str(federation.root)])
    assert result.exit_code == 1


def test_under_reported_epsilon_signed_by_the_site_is_caught(federation: Federation) -> None:
    # The site itself signs a low claim: the signature verifies, the arithmetic does not.
    recs = federation.lines("beta")
    recs[2]["epsilon"] = recs[2]["epsilon"] * 0.8
    federation.resign(recs[2])
    federation.write_lines("beta", recs)  # chain of round 2 is the last: nothing else breaks
    found = codes(federation)
    assert found["epsilon_under_reported"] == [("beta", 2)]
    assert ("beta", 2) in found["epsilon_below_independent"]
    assert "bad_signature" not in found


def test_removed_round_is_a_missing_round(federation: Federation) -> None:
    recs = federation.lines("alpha")
    federation.write_lines("alpha", [recs[0], recs[2]])
    assert codes(federation)["missing_round"] == [("alpha", 2)]


def test_removed_first_round_is_a_missing_round(federation: Federation) -> None:
    recs = federation.lines("alpha")
    federation.write_lines("alpha", recs[1:])
    assert codes(federation)["missing_round"] == [("alpha", 1)]


def test_two_rounds_swapped_are_reordered(federation: Federation) -> None:
    recs = federation.lines("beta")
    federation.write_lines("beta", [recs[0], recs[2], recs[1]])
    found = codes(federation)
    assert {r for s, r in found["reordered"] if s == "beta"} >= {2}
    assert "bad_signature" not in found


def test_swapped_round_ids_break_signatures(federation: Federation) -> None:
    recs = federation.lines("beta")
    recs[1]["round_id"], recs[2]["round_id"] = recs[2]["round_id"], recs[1]["round_id"]
    federation.write_lines("beta", recs)
    assert {r for s, r in codes(federation)["bad_signature"]} == {1, 2}


def test_record_resigned_with_another_key_is_a_bad_signature(federation: Federation) -> None:
    recs = federation.lines("alpha")
    federation.resign(recs[1], Ed25519PrivateKey.generate())
    federation.write_lines("alpha", recs)
    found = codes(federation)
    assert found["bad_signature"] == [("alpha", 1)]


def test_site_not_on_the_roster_is_reported(federation: Federation) -> None:
    roster = Roster.load(federation.root / "roster.json")
    Roster(roster.federation, {"alpha": roster.sites["alpha"]}).save(
        federation.root / "roster.json"
    )
    found = codes(federation)
    assert {s for s, _ in found["unknown_site"]} == {"beta"}


def test_impostor_with_its_own_key_is_not_on_the_roster(federation: Federation) -> None:
    recs = federation.lines("alpha")
    impostor = dict(recs[0], site="mallory")
    federation.resign(impostor, Ed25519PrivateKey.generate())
    federation.write_lines("mallory", [impostor])
    assert codes(federation)["unknown_site"] == [("mallory", 0)]


def test_duplicated_record_is_reported(federation: Federation) -> None:
    recs = federation.lines("alpha")
    federation.write_lines("alpha", [*recs, recs[1]])
    assert codes(federation)["duplicate_record"] == [("alpha", 1)]


def test_forked_chain_is_reported(federation: Federation) -> None:
    recs = federation.lines("alpha")
    branch = dict(recs[2], model_hash="ab" * 32)
    federation.resign(branch)
    federation.write_lines("alpha", [*recs, branch])
    assert codes(federation)["fork"] == [("alpha", 2)]


def test_roster_of_another_federation_is_reported(federation: Federation) -> None:
    roster = Roster.load(federation.root / "roster.json")
    Roster("other-fed", roster.sites).save(federation.root / "roster.json")
    assert "federation_mismatch" in failing(federation)


def test_explicit_roster_flag_and_unknown_key(federation: Federation, tmp_path: Path) -> None:
    other = tmp_path / "other-roster.json"
    Roster(
        "test-fed",
        {
            "alpha": raw_public(Ed25519PrivateKey.generate()),
            "beta": raw_public(federation.keys["beta"]),
        },
    ).save(other)
    result = CliRunner().invoke(
        audit_command, [str(federation.root / "records"), "--roster", str(other), "--json"]
    )
    assert result.exit_code == 1
    import json

    data = json.loads(result.output)
    bad = {(f["site"], f["round_id"]) for f in data["findings"] if f["code"] == "bad_signature"}
    assert bad == {("alpha", 0), ("alpha", 1), ("alpha", 2)}


def test_malformed_line_is_a_finding(federation: Federation) -> None:
    with federation.path("alpha").open("a") as fh:
        fh.write('{"version": 1}\n')
    assert "malformed_record" in failing(federation)
