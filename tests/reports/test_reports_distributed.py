"""Audit of distributed-DP (Skellam) records: recomputed twice, and the masking-failure ε stated."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from reports_fixtures import model_hash, raw_public

from securefl.dp.accounting import epsilon
from securefl.dp.events import DPEvent, SkellamEvent
from securefl.reports import RecordWriter, Roster
from securefl.reports.audit import audit
from securefl.reports.recompute import independent_epsilon, securefl_epsilon

SCHEMA = Path(__file__).parents[2] / "docs" / "schema" / "privacy-record-v1.json"
N, BATCH = 1000, 10


def _event(shares: int = 2) -> SkellamEvent:
    return SkellamEvent.create(
        mu_total=9.0e4,
        l1_sensitivity=900.0,
        l2_sensitivity=100.0,
        shares=shares,
        sample_rate=BATCH / N,
        steps=20,
        max_grad_norm=1.0,
        secure_rng=True,
    )


def _write(root: Path, *, scale: float = 1.0, rounds: int = 3) -> Path:
    """Two sites' signed records of distributed rounds; ``scale`` < 1 under-reports ε."""
    (root / "records").mkdir(parents=True)
    keys = {}
    for site in ("a", "b"):
        keys[site] = Ed25519PrivateKey.generate()
        writer = RecordWriter(
            root / "records" / f"{site}.jsonl",
            federation="test-fed",
            site=site,
            signing_key=keys[site],
        )
        events: list[DPEvent] = []
        for r in range(rounds):
            events.append(_event())
            writer.append(
                round_id=r,
                event=events[-1],
                accountant="prv",
                delta=1e-5,
                epsilon=scale * epsilon(events, delta=1e-5, accountant="prv"),
                epsilon_budget=50.0,
                model_hash=model_hash(r),
                dataset_size=N,
                expected_batch_size=BATCH,
            )
    Roster("test-fed", {s: raw_public(k) for s, k in keys.items()}, None).save(root / "roster.json")
    return root


def _codes(report) -> dict[str, str]:
    return {f.code: f.severity for f in report.findings}


def test_honest_distributed_records_pass_and_state_the_masking_failure_epsilon(tmp_path):
    report = audit([_write(tmp_path / "fed")], no_server_log=True)
    codes = _codes(report)
    assert report.passed, [f.message for f in report.findings]
    assert codes.get("masking_failure_exposure") == "info"
    exposure = [f for f in report.findings if f.code == "masking_failure_exposure"]
    assert {f.site for f in exposure} == {"a", "b"}
    central = epsilon([_event()] * 3, delta=1e-5)
    alone = epsilon([_event().share_event()] * 3, delta=1e-5)
    assert alone > central
    assert f"{alone:.4g}" in exposure[0].message
    for r in report.rounds:
        assert r.independent == pytest.approx(r.recomputed, rel=1e-9)


def test_distributed_records_validate_against_the_json_schema(tmp_path):
    root = _write(tmp_path / "fed", rounds=1)
    schema = json.loads(SCHEMA.read_text())
    line = json.loads((root / "records" / "a.jsonl").read_text().splitlines()[0])
    jsonschema.validate(line, schema)
    for missing in ("mu_total", "shares"):
        bad = json.loads(json.dumps(line))
        del bad["event"][missing]
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    dpsgd = json.loads(json.dumps(line))
    dpsgd["event"]["kind"] = "dpsgd"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dpsgd, schema)


def test_a_site_under_reporting_distributed_epsilon_fails_both_recomputations(tmp_path):
    """A site that claims 10 % less than the Skellam bound (e.g. a weakened accountant)."""
    report = audit([_write(tmp_path / "fed", scale=0.9)], no_server_log=True)
    codes = _codes(report)
    assert not report.passed
    assert codes["epsilon_under_reported"] == "fail"
    assert codes["epsilon_below_independent"] == "fail"


def test_a_site_claiming_the_gaussian_epsilon_for_skellam_noise_is_caught(tmp_path):
    """Skellam costs more than the Gaussian of the same variance; claiming the latter fails."""
    root = _write(tmp_path / "fed", rounds=1)
    line = json.loads((root / "records" / "a.jsonl").read_text().splitlines()[0])
    ev = line["event"]
    gaussian = DPEvent(
        noise_multiplier=ev["noise_multiplier"],
        sample_rate=ev["sample_rate"],
        steps=ev["steps"],
        max_grad_norm=1.0,
        secure_rng=True,
    )
    claimed = epsilon([gaussian], delta=1e-5, accountant="prv")
    events = [ev]
    assert independent_epsilon(events, delta=1e-5) > claimed * 1.01 + 1e-3
    assert securefl_epsilon(events, delta=1e-5, accountant="prv") > claimed * 1.01 + 1e-3


def test_the_independent_recomputation_matches_securefls_on_mixed_chains():
    local = DPEvent(
        noise_multiplier=1.2, sample_rate=0.05, steps=20, max_grad_norm=1.0, secure_rng=True
    ).to_dict()
    chain = [local, _event().to_dict(), _event(shares=3).to_dict(), local]
    ours = securefl_epsilon(chain, delta=1e-5, accountant="rdp")
    theirs = independent_epsilon(chain, delta=1e-5)
    assert theirs == pytest.approx(ours, rel=1e-6)
