"""A cheating server's round ids: the site's ledger and its signed records must not drift.

The server plays with the round id of a round start. Every refusal must come
before the site reserves privacy, and whatever the ledger charges must have a
signed record (the audit only sees records).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_cheating_server_settings import N_EXAMPLES, _drain, _fields, _open, _site, _train_epoch

from securefl.errors import SecureFLError, WireError
from securefl.params import ParamSpec
from securefl.reports import RecordWriter
from securefl.reports.records import read_record_file
from securefl.runtime import messages as m
from securefl.runtime.global_model import PlainGlobalModel
from securefl.wire import MAX_ROUND, SERVER, Envelope


def _with_records(tmp_path: Path, **kwargs):
    server, site, model, opt, loader = _site(tmp_path / "state", **kwargs)
    writer = RecordWriter(
        tmp_path / "a.jsonl", federation="f", site="a", signing_key=Ed25519PrivateKey.generate()
    )
    site.records = writer
    site._account.records = writer  # what LocalFederation wires through Site(record_writer=)
    return server, site, model, opt, loader, writer


def _end(server, rnd: int) -> None:
    server.send(
        Envelope(
            federation="f",
            round=rnd,
            stage=m.ROUND_END,
            sender=SERVER,
            receiver="a",
            payload=m.RoundEnd(status="aggregated", survivors=("a", "b")).to_bytes(),
        )
    )


def _recorded_rounds(writer: RecordWriter) -> list[int]:
    if not writer.path.exists():
        return []
    good, bad = read_record_file(writer.path)
    assert not bad
    return [r.record["round_id"] for r in good]


def test_a_round_id_below_the_last_recorded_is_refused_before_the_ledger(tmp_path):
    # round 5 runs normally; then the server opens round 3. The ledger admits it
    # (3 was never used), the site trains a whole round, the ledger commits it,
    # and only then the record writer refuses round 3 < 5: privacy charged, no
    # record for the audit, the site dies after spending.
    server, site, model, opt, loader, writer = _with_records(tmp_path, epsilon=50.0)
    for rnd in (5, 3):
        _open(server, _fields(model), rnd=rnd)
        _end(server, rnd)
    trained = []
    with pytest.raises(SecureFLError):
        for rnd in site.rounds(model):
            _train_epoch(model, opt, loader)
            trained.append(rnd.number)
            rnd.submit(num_examples=N_EXAMPLES)
    ledger_rounds = [e.round_id for e in site.ledger.history()]
    assert ledger_rounds == _recorded_rounds(writer)  # every charge has its signed record
    assert ledger_rounds == [5]  # round 3 refused before its reservation
    assert trained == [5]  # and before any training
    stages = [e.stage for e in _drain(server)]
    assert stages.count(m.REPORT) == 1


def test_a_huge_round_id_is_refused_with_the_projects_error(tmp_path):
    # 2**63 fits the wire (msgpack uint64) but not SQLite: OverflowError escapes
    server, site, model, _opt, _loader, _writer = _with_records(tmp_path)
    _open(server, _fields(model), rnd=2**63)
    with pytest.raises(SecureFLError):
        list(site.rounds(model))
    assert site.ledger.history() == []


def test_an_update_refused_after_training_is_charged_and_recorded(tmp_path):
    # The server sends a finite global model of 1e38 weights: it passes every check,
    # the site trains (noisy steps run, privacy spent), then its own update check
    # refuses the non-finite update. The reservation stays pending (charged in
    # full by the ledger) and no signed record exists: the audit sees nothing.
    server, site, model, opt, loader, writer = _with_records(tmp_path, epsilon=50.0)
    spec = ParamSpec.from_state_dict(model._module.state_dict())
    huge = np.full(spec.size, 1e38, dtype=np.float32)
    _open(server, _fields(model, model=PlainGlobalModel(huge).payload()), rnd=1)
    with pytest.raises(SecureFLError):
        for rnd in site.rounds(model):
            _train_epoch(model, opt, loader)
            rnd.submit(num_examples=N_EXAMPLES)
    assert site.ledger.spent() > 0  # the steps ran
    assert site.ledger.pending() == []  # what ran is committed, not left pending
    assert [e.round_id for e in site.ledger.history()] == _recorded_rounds(writer) == [1]
    assert m.REPORT not in [e.stage for e in _drain(server)]  # nothing was released


@pytest.mark.parametrize("rnd", [MAX_ROUND + 1, 2**63, 2**64 - 1])
def test_the_wire_refuses_a_round_id_above_its_cap(rnd):
    # the ledger refuses such ids too (it keys on SQLite's signed 64-bit integers);
    # the envelope decoder refuses them first, with the project's own error
    env = Envelope(federation="f", round=rnd, stage="s", sender=SERVER, receiver="a", payload=b"")
    with pytest.raises(WireError):
        Envelope.from_bytes(env.to_bytes())
    ok = Envelope(
        federation="f", round=MAX_ROUND, stage="s", sender=SERVER, receiver="a", payload=b""
    )
    assert Envelope.from_bytes(ok.to_bytes()).round == MAX_ROUND


def test_the_ledger_refuses_a_round_id_sqlite_cannot_hold(tmp_path):
    _server, site, _model, _opt, _loader, _writer = _with_records(tmp_path)
    planned = site._account.actual_event()
    with pytest.raises(SecureFLError):
        site.ledger.reserve(2**63, planned)
    assert site.ledger.history() == []


def test_a_step_refused_inside_the_loop_is_charged_at_once(tmp_path):
    # the noisy step itself refuses non-finite gradients (a global model of 1e38): the
    # round is charged and recorded right there, not whenever the round's generator is
    # closed (a loop that keeps it alive would leave the charge pending, unrecorded)
    server, site, model, opt, _loader, writer = _with_records(tmp_path, epsilon=50.0)
    spec = ParamSpec.from_state_dict(model._module.state_dict())
    huge = np.full(spec.size, 1e38, dtype=np.float32)
    _open(server, _fields(model, model=PlainGlobalModel(huge).payload()), rnd=1)
    rounds = site.rounds(model)
    next(rounds)
    x, y = torch.full((8, 3), 10.0), torch.zeros(8, dtype=torch.long)  # logits overflow
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    with pytest.raises(SecureFLError):
        opt.step()
    assert site.ledger.pending() == []  # generator still open
    assert [e.round_id for e in site.ledger.history()] == _recorded_rounds(writer) == [1]
    rounds.close()
