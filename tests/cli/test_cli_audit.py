"""``simulate --out`` then ``audit``: the folder passes, and tampering with it fails.

The folder holds the sites' records, the roster with every site's and the
server's key, and the server's signed round log; the audit finds the log on
its own and holds the records against it.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from securefl.cli import cli


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="securefl")


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _fails(folder: Path, *extra: str) -> tuple[int, set[tuple[str, str | None]]]:
    result = _invoke("audit", str(folder), "--json", *extra)
    report = json.loads(result.stdout)
    return result.exit_code, {
        (f["code"], f["site"]) for f in report["findings"] if f["severity"] == "fail"
    }


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "o"
    result = _invoke("simulate", "--secure", "mask", "--rounds", "2", "--json", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def folder(simulated: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "o"
    shutil.copytree(simulated, copy)
    return copy


def test_simulated_folder_passes_against_its_own_server_log(folder: Path) -> None:
    roster = json.loads((folder / "roster.json").read_text())
    assert roster["version"] == 2 and roster["server"]["name"] == "server"
    log = [json.loads(x) for x in (folder / "server_log.jsonl").read_text().splitlines()]
    assert [(e["round_id"], e["status"]) for e in log] == [
        (1, "aggregated"),
        (2, "aggregated"),
        (2, "finished"),  # the signed closing line
    ]
    assert all(e["model_hash"] and e["submitted"] == e["survivors"] for e in log[:2])
    assert all(e["dp"]["batch_size"] and e["dp"]["max_rounds"] == 2 for e in log)
    result = _invoke("audit", str(folder), "--json", "--expect-rounds", "2")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["server_log"].endswith("server_log.jsonl")


def test_records_cut_short_fail(folder: Path) -> None:
    records = folder / "records" / "hospital-a.jsonl"
    records.write_text(records.read_text().splitlines()[0] + "\n")
    code, fails = _fails(folder)
    assert code == 1 and fails == {("records_truncated", "hospital-a")}


def test_a_rewritten_server_log_fails(folder: Path) -> None:
    path = folder / "server_log.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    lines[1]["survivors"] = ["hospital-b", "hospital-c"]
    path.write_text(
        "".join(json.dumps(x, sort_keys=True, separators=(",", ":")) + "\n" for x in lines)
    )
    code, fails = _fails(folder)
    assert code == 1 and ("server_log_bad_signature", None) in fails


def test_a_record_line_with_a_duplicate_key_fails(folder: Path) -> None:
    records = folder / "records" / "hospital-c.jsonl"
    lines = records.read_text().splitlines()
    lines[1] = lines[1].replace('"delta":', '"delta":0.5,"delta":', 1)
    records.write_text("\n".join(lines) + "\n")
    code, fails = _fails(folder)
    assert code == 1 and ("duplicate_key", None) in fails
    assert ("records_truncated", "hospital-c") in fails


def test_audit_html_says_where_it_wrote(folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    result = _invoke("audit", str(folder), "--json", "--html", str(target))
    assert result.exit_code == 0 and target.exists()
    assert f"Wrote the HTML report to {target.resolve()}" in result.stderr
    json.loads(result.stdout)  # stdout still holds the one JSON document


def test_audit_table_fits_80_columns_piped(folder: Path) -> None:
    result = CliRunner(env={"COLUMNS": "80"}).invoke(
        cli, ["audit", str(folder)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
    for site in ("hospital-a", "hospital-b", "hospital-c"):
        assert site in result.stdout
