"""A site killed at any protocol stage and restarted from its state folder loses nothing.

For ``plain``, ``mask`` and ``he``, site-a is killed once in round 2 (on
receiving the round start, while training with its privacy reserved, on
sending each of its messages, on receiving the round's end; the he keymaker
also as it sends the keys) in a run of four rounds, and started again on a copy of its state folder
as it was at the moment of death. In every case the run finishes; the
restarted site's spent ε equals its ledger's and what ``securefl audit``
recomputes from its signed records; no round id or mask key is used twice
(no two different messages under one (site, round, stage)); and its records
chain on without a gap or a fork, so the audit passes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from restart_harness import SITES, CrashPoint, Outcome, _model, run_federation
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.aggregation.plain import _STAGE as PLAIN_UPDATE
from securefl.aggregation.plain import PlainMode
from securefl.config import DPConfig, RoundConfig, TrainConfig
from securefl.errors import BudgetExhaustedError, ProtocolError, SecureFLError
from securefl.he._messages import STAGE_UPDATE as HE_UPDATE
from securefl.he._relay import KEYS_STAGE
from securefl.params import ParamSpec, model_vector
from securefl.reports import read_record_file
from securefl.runtime import ServerStage, Site
from securefl.runtime import messages as m
from securefl.runtime.global_model import PlainGlobalModel
from securefl.secagg import _messages as mask
from securefl.transport.memory import MemoryHub
from securefl.wire import SERVER, Envelope

_EVERY_MODE = [
    ("receive", m.ROUND_START, 2),
    ("train", "", 2),
    ("send", m.REPORT, 2),
    ("receive", m.ROUND_END, 2),
]
CASES = (
    [("plain", *c) for c in [*_EVERY_MODE, ("send", PLAIN_UPDATE, 2)]]
    + [
        ("mask", *c)
        for c in [
            *_EVERY_MODE,
            *[
                ("send", stage, 2)
                for stage in (
                    mask.ADVERTISE,
                    mask.SHARE,
                    mask.MASKED_INPUT,
                    mask.CONSISTENCY,
                    mask.UNMASK,
                )
            ],
        ]
    ]
    + [("he", *c) for c in [*_EVERY_MODE, ("send", HE_UPDATE, 2), ("send", KEYS_STAGE, 0)]]
)


def _check_restarted_site(out: Outcome, name: str) -> None:
    site = out.sites[name]
    ledger = site.ledger
    assert ledger.pending() == []  # every round the crash interrupted is settled
    records, bad = read_record_file(out.states[name] / "records" / f"{name}.jsonl")
    assert bad == []
    # the chain: round ids increase within the run, one record per ledger row
    rounds = [r.record["round_id"] for r in records]
    assert rounds == sorted(set(rounds))
    assert {(e.run, e.round_id) for e in ledger.history()} == {
        (r.record.get("run", ""), r.record["round_id"]) for r in records
    }
    report = out.audit_site(name)
    assert report.passed, [f for f in report.findings if f.fails]
    mine = [r for r in report.rounds if r.site == name]
    assert mine[-1].recomputed == pytest.approx(ledger.spent(), rel=1e-6)
    assert records[-1].record["epsilon"] == pytest.approx(ledger.spent(), rel=1e-9)
    # nothing sent twice differently under one round name: no round id or mask key reused
    for (sender, rnd, stage), payloads in out.sent.items():
        assert len(payloads) == 1 or stage == m.HELLO, (sender, rnd, stage)


@pytest.mark.parametrize(("secure", "action", "stage", "round_number"), CASES)
def test_a_site_killed_mid_round_restarts_and_the_run_finishes(
    tmp_path: Path, secure: str, action: str, stage: str, round_number: int
) -> None:
    crash = CrashPoint("site-a", action, stage, round_number)
    out = run_federation(tmp_path, secure, crash=crash, max_rounds=4)
    assert crash.fired, "the crash point was never reached"
    assert out.errors == {}
    assert out.incarnations["site-a"] == 2
    assert out.driver.stage is ServerStage.FINISHED and not out.driver.halted
    assert out.driver.current_round == 4
    assert all(out.sites[n].final_params is not None for n in SITES)
    for name in SITES:
        _check_restarted_site(out, name)
    # the restarted site took part again after its crash, up to the last round
    last = read_record_file(out.states["site-a"] / "records" / "site-a.jsonl")[0][-1]
    assert last.record["round_id"] == 4
    assert "site-a" in out.driver.history[-1].survivors


def test_a_round_killed_while_training_is_charged_in_full_and_recorded(tmp_path: Path) -> None:
    """Fail closed: the pending reservation of the interrupted round counts as spent."""
    out = run_federation(tmp_path, "plain", crash=CrashPoint("site-a", "train", "", 2))
    records = read_record_file(out.states["site-a"] / "records" / "site-a.jsonl")[0]
    by_round = {r.record["round_id"]: r.record for r in records}
    assert set(by_round) == {1, 2, 3}
    # round 2 is charged as planned (every step of the epoch), though one step ran
    assert by_round[2]["event"]["steps"] == by_round[1]["event"]["steps"] == 4


def test_a_transport_error_mid_round_reconnects_and_the_site_goes_on(tmp_path: Path) -> None:
    """The update's send fails once: the site leaves round 2, says hello again, takes round 3."""
    out = run_federation(tmp_path, "mask", flaky={"site-b": (mask.ADVERTISE, 2)})
    assert out.errors == {}
    site = out.sites["site-b"]
    assert out.incarnations["site-b"] == 1 and site._link.reconnections == 1
    assert out.driver.stage is ServerStage.FINISHED and not out.driver.halted
    assert site.final_params is not None
    # round 2 was charged before the send failed: it stays charged and recorded
    assert [h["round"] for h in site.history] == [1, 2, 3]
    _check_restarted_site(out, "site-b")


def test_too_little_budget_after_a_crash_ends_the_site_with_one_line_and_a_goodbye(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Noise is calibrated for the planned rounds; a round a crash charged may be one too many.

    The server here runs one round more than the sites planned for, as a
    server that re-opened a crashed round under a fresh id does. site-a's
    crashed round 1 was charged in full, so its budget holds no third round:
    it says so in one line and says goodbye, before any training.
    """
    crash = CrashPoint("site-a", "train", "", 1)
    out = run_federation(
        tmp_path,
        "plain",
        crash=crash,
        max_rounds=2,
        server_rounds=3,
        epsilon=3.0,
        noise_multiplier=None,
    )
    error = out.errors.get("site-a")
    assert isinstance(error, BudgetExhaustedError), [
        (h.round, h.status, h.cohort, h.survivors, h.reason) for h in out.driver.history
    ]
    assert "\n" not in str(error) and "refused" in str(error)
    site = out.sites["site-a"]
    assert site.ledger.spent() <= site.dp.epsilon
    assert any("leaving the federation" in r.message for r in caplog.records)
    _check_restarted_site(out, "site-a")
    # it said goodbye (the server may have halted first: the others ran out too)
    assert any(b"budget" in p for p in out.sent[("site-a", 0, m.BYE)])


@pytest.mark.parametrize(
    "cheat",
    [{"max_weight": 1e9}, {"cohort": tuple(sorted((*SITES, "mallory")))}],
    ids=["max-weight", "stranger-in-cohort"],
)
def test_a_cheating_copy_of_an_old_round_start_is_refused_not_dropped(
    tmp_path: Path, cheat: dict[str, object]
) -> None:
    """The drop of an already-taken round start comes after every check of the start.

    A server that dresses a round start breaking the site's policy as the
    re-delivery of a round the site took (same run, round and model) must
    meet the refusal, not a silent drop: the operator hears of it.
    """
    hub = MemoryHub()
    server = hub.connect(SERVER)
    site, model = _plain_site(tmp_path, hub)
    server.send(_start("aa", 1))
    dying = site.rounds(model)
    next(dying)  # round 1 reserved, then killed
    hub.disconnect("site-a")
    restarted, model = _plain_site(tmp_path, hub)
    spent = restarted.ledger.spent()
    server.send(_start("aa", 1, **cheat))
    server.send(_start("aa", 2))  # what a drop would go on to take
    with pytest.raises(SecureFLError):
        next(restarted.rounds(model))
    assert restarted.ledger.spent() == spent and len(restarted.ledger.history()) == 1
    del dying


def _start(run: str, round_number: int, *, shift: float = 0.0, **settings: object) -> Envelope:
    model = _model()
    spec = ParamSpec.from_state_dict(model.state_dict())
    fields: dict[str, object] = dict(cohort=SITES, max_weight=64.0, min_sites=2)
    fields.update(settings)
    payload = m.RoundStart(
        model=PlainGlobalModel(model_vector(model, spec) + np.float32(shift)).payload(),
        spec=spec.to_dict(),
        run=run,
        **fields,  # type: ignore[arg-type]
    ).to_bytes()
    return Envelope(
        federation="ward", round=round_number, stage=m.ROUND_START, sender=SERVER,
        receiver="site-a", payload=payload,
    )  # fmt: skip


def _plain_site(state: Path, hub: MemoryHub) -> tuple[Site, nn.Module]:
    site = Site(
        name="site-a",
        federation="ward",
        transport=hub.connect("site-a"),
        mode=PlainMode(),
        dp=DPConfig(epsilon=50.0, noise_multiplier=1.0, batch_size=8),
        train=TrainConfig(),
        rounds=RoundConfig(max_rounds=3, min_sites=2, stage_timeout_seconds=5, max_weight=64.0),
        state_dir=state,
        roster=SITES,
    )
    data = TensorDataset(torch.randn(32, 3), torch.randint(0, 2, (32,)))
    model = _model()
    model, _, _ = site.privatize(model, torch.optim.SGD(model.parameters(), lr=0.1),
                                 DataLoader(data, batch_size=8))  # fmt: skip
    return site, model


def test_a_restarted_site_refuses_a_round_it_already_took_part_in(tmp_path: Path) -> None:
    """A server re-opening an old (run, round) with another model costs nothing: refused.

    Round 1 of run "aa" is reserved, then the site is killed (its generator
    never closes). Restarted on the same folder, it drops the very same round
    start delivered again (what the HTTPS outbox re-delivers to a new process:
    same run, round and model) and takes the next round; a round start that
    re-opens round 1 of "aa" with another model is refused before any
    privacy is spent. Round 1 of another run is a new round: rounds are named
    by (federation, run, round).
    """
    hub = MemoryHub()
    server = hub.connect(SERVER)
    site, model = _plain_site(tmp_path, hub)
    server.send(_start("aa", 1))
    dying = site.rounds(model)
    next(dying)  # round 1 reserved; then the process dies here (nothing runs after)
    hub.disconnect("site-a")
    before = site.ledger.history()
    assert [(e.run, e.round_id, e.status) for e in before] == [("aa", 1, "pending")]

    restarted, model = _plain_site(tmp_path, hub)
    assert [(e.run, e.round_id, e.status) for e in restarted.ledger.history()] == [
        ("aa", 1, "committed")  # the interrupted round, charged in full and recorded
    ]
    spent = restarted.ledger.spent()
    server.send(_start("aa", 1))  # the same round start again: dropped
    server.send(_start("aa", 2))
    rnd = next(restarted.rounds(model))
    assert rnd.number == 2
    assert [(e.run, e.round_id) for e in restarted.ledger.history()] == [("aa", 1), ("aa", 2)]
    hub.disconnect("site-a")

    other, model = _plain_site(tmp_path, hub)
    spent = other.ledger.spent()
    server.send(_start("aa", 1, shift=0.5))  # round 1 of "aa" re-opened with another model
    with pytest.raises(ProtocolError):
        next(other.rounds(model))
    assert other.ledger.spent() == spent and len(other.ledger.history()) == 2
    hub.disconnect("site-a")

    again, model = _plain_site(tmp_path, hub)
    server.send(_start("bb", 1))  # round 1 of a new run of the server is a new round
    rnd = next(again.rounds(model))
    assert rnd.number == 1
    del dying
    assert [(e.run, e.round_id) for e in again.ledger.history()] == [
        ("aa", 1),
        ("aa", 2),
        ("bb", 1),
    ]
