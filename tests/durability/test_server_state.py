"""The server state folder refuses what it cannot trust and never reuses a round id."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from _durable_fed import SPEC, Federation, check_run

from securefl.errors import ConfigError, IntegrityError, ProtocolError
from securefl.hazmat.sign import SigningKey
from securefl.params import ParamSpec
from securefl.reports.server_log import ServerLogWriter
from securefl.runtime import messages as m
from securefl.runtime.journal import Journal
from securefl.runtime.server import ServerDriver, ServerStage
from securefl.runtime.server_state import CHECKPOINTS, JOURNAL_NAME, KEYS_NAME, ServerState
from securefl.strategy import FedAdam, FedAvgM
from securefl.wire import SERVER, Envelope


class _Crash(BaseException):
    """The process dies here (not an error anyone handles)."""


def _completed(tmp_path: Path, secure: str, rounds: int = 2) -> Federation:
    fed = Federation(tmp_path, secure, max_rounds=rounds)
    fed.say_hello()
    fed.run()
    return fed


def _flip(path: Path, offset: int = -1) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("secure", ["plain", "he"])
def test_a_flipped_byte_in_a_checkpoint_is_refused(tmp_path: Path, secure: str) -> None:
    fed = _completed(tmp_path, secure)
    checkpoints = sorted((fed.state_dir / CHECKPOINTS).iterdir())
    assert checkpoints
    for offset in (-1, 10, len(checkpoints[-1].read_bytes()) // 2):
        _flip(checkpoints[-1], offset)
        with pytest.raises(IntegrityError, match="does not match the hash"):
            fed.start_server()
        _flip(checkpoints[-1], offset)  # restored: loads again
    driver = fed.start_server()
    assert driver.current_round == 2


def test_a_missing_checkpoint_is_refused(tmp_path: Path) -> None:
    fed = _completed(tmp_path, "mask")
    for path in (fed.state_dir / CHECKPOINTS).iterdir():
        path.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        fed.start_server()


def test_damaged_he_keys_are_refused(tmp_path: Path) -> None:
    fed = _completed(tmp_path, "he")
    _flip(fed.state_dir / KEYS_NAME)
    with pytest.raises(IntegrityError, match="does not match the hash"):
        fed.start_server()


def test_a_folder_of_another_federation_mode_or_model_is_refused(tmp_path: Path) -> None:
    ServerState(tmp_path, federation="f", mode="mask", spec=SPEC)
    other = ParamSpec(names=("w",), shapes=((5,),), dtypes=("float32",))
    for kwargs, what in [
        ({"federation": "g", "mode": "mask", "spec": SPEC}, "federation"),
        ({"federation": "f", "mode": "he", "spec": SPEC}, "mode"),
        ({"federation": "f", "mode": "mask", "spec": other}, "spec"),
    ]:
        with pytest.raises(ConfigError, match=f"holds {what}"):
            ServerState(tmp_path, **kwargs)
    assert ServerState(tmp_path, federation="f", mode="mask", spec=SPEC).run_id


def test_the_run_id_is_kept_for_the_life_of_the_folder(tmp_path: Path) -> None:
    first = ServerState(tmp_path, federation="f", mode="plain", spec=SPEC).run_id
    assert ServerState(tmp_path, federation="f", mode="plain", spec=SPEC).run_id == first
    assert ServerState(tmp_path / "x", federation="f", mode="plain", spec=SPEC).run_id != first


def test_a_full_disk_keeps_the_round_closed_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fed = Federation(tmp_path, "mask")
    journal = fed.driver.journal
    assert isinstance(journal, ServerState)
    real = Journal.append

    def full(self: Journal, body: dict) -> None:
        if body["kind"] == "opening":
            raise OSError(28, "No space left on device")
        real(self, body)

    monkeypatch.setattr(Journal, "append", full)
    out = []
    with caplog.at_level(logging.ERROR):
        for site in fed.sites.values():
            for env in site.hello():
                out += fed.driver.handle(env)
        out += fed.driver.on_deadline()
    assert [e for e in out if e.stage == m.ROUND_START] == []
    assert fed.driver.stage is ServerStage.WAITING_FOR_SITES and fed.driver.current_round == 0
    assert "No space left on device" in caplog.text and "round 1 does not open" in caplog.text
    monkeypatch.setattr(Journal, "append", real)  # space freed: the next deadline opens it
    out = fed.driver.on_deadline()
    assert {e.receiver for e in out if e.stage == m.ROUND_START} == set(fed.sites)
    assert fed.driver.current_round == 1
    fed.queue.extend(out)
    fed.run()
    check_run(fed, crashed_round=None, completed=3)


@pytest.mark.parametrize("secure", ["plain", "mask", "he"])
def test_a_crash_while_a_round_is_checkpointed_loses_only_that_round(
    tmp_path: Path, secure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the checkpoint file of round 2 is on disk, its journal line half written:
    # the restart cuts the torn line, drops the orphan file, abandons round 2
    fed = Federation(tmp_path, secure, max_rounds=4)
    real = Journal.append

    def dies(self: Journal, body: dict) -> None:
        if body["kind"] == "round" and body["round"] == 2:
            with self.path.open("ab") as fh:
                fh.write(b'{"body":{"kind":"round","round":2,"sum')
            raise _Crash
        real(self, body)

    monkeypatch.setattr(Journal, "append", dies)
    fed.say_hello()
    with pytest.raises(_Crash):
        fed.run()
    assert (fed.state_dir / CHECKPOINTS / "round-000002.safetensors").exists()
    monkeypatch.setattr(Journal, "append", real)
    fed.crash_and_restart()
    assert not (fed.state_dir / CHECKPOINTS / "round-000002.safetensors").exists()
    fed.run()
    check_run(fed, crashed_round=2)
    assert [h.round for h in fed.driver.history] == [1, 2, 3, 4]


def test_a_late_message_of_an_ended_round_is_dropped_not_a_violation(tmp_path: Path) -> None:
    # round 2 is open when the server dies; after the restart, a site's retried
    # message of round 2 (abandoned) or of round 1 (closed) is harmless
    fed = Federation(tmp_path, "plain", max_rounds=3)
    fed.say_hello()
    fed.run(until=lambda d: d.current_round == 2 and d.stage is ServerStage.ROUND_OPEN)
    restarted = fed.start_server()
    assert restarted.current_round == 2 and restarted.stage is ServerStage.WAITING_FOR_SITES

    def report(round_id: int) -> Envelope:
        payload = m.Report(metrics={}).to_bytes()
        return Envelope(
            federation="durable",
            round=round_id,
            stage=m.REPORT,
            sender="site-a",
            receiver=SERVER,
            payload=payload,
        )

    assert restarted.handle(report(2)) == []
    assert restarted.handle(report(1)) == []
    with pytest.raises(ProtocolError, match="outside its round"):  # a round never opened
        restarted.handle(report(3))


def test_restart_resumes_the_patience_state(tmp_path: Path) -> None:
    fed = _completed(tmp_path, "plain", rounds=2)
    before = fed.driver.patience
    driver = fed.start_server()
    assert (driver.patience.best, driver.patience.stale) == (before.best, before.stale)
    assert [h.round for h in driver.history] == [1, 2]


@pytest.mark.parametrize("strategy", [FedAvgM(momentum=0.7), FedAdam()])
def test_strategy_state_round_trips(strategy: FedAvgM | FedAdam) -> None:
    rng = np.random.default_rng(0)
    theta = rng.normal(size=5)
    for r in (1, 2):
        theta = strategy.apply(theta, rng.normal(size=5), r)
    copy = type(strategy)()
    copy.__dict__.update({k: v for k, v in strategy.__dict__.items() if not k.startswith("_")})
    copy.load_state(strategy.state_dict())
    step = rng.normal(size=5)
    np.testing.assert_array_equal(copy.apply(theta, step, 3), strategy.apply(theta, step, 3))


def test_a_round_log_of_another_run_is_refused(tmp_path: Path) -> None:
    key = SigningKey.generate()
    writer = ServerLogWriter(tmp_path / "log.jsonl", federation="f", signing_key=key, run="ab")
    writer.append(
        round_id=1,
        status="abandoned",
        cohort=["a"],
        survivors=[],
        submitted=[],
        model_hash=None,
        max_weight=1.0,
        min_sites=1,
        config={},
        dp={
            "epsilon": 1.0,
            "delta": 1e-5,
            "accountant": "rdp",
            "local_epochs": 1,
            "max_grad_norm": 1.0,
            "batch_size": None,
            "noise_multiplier": None,
            "max_rounds": None,
        },
    )
    with pytest.raises(IntegrityError, match="run ab"):
        ServerLogWriter(tmp_path / "log.jsonl", federation="f", signing_key=key, run="cd")


def test_attach_refuses_a_driver_of_another_federation(tmp_path: Path) -> None:
    fed = Federation(tmp_path, "plain")
    state = ServerState(fed.state_dir, federation="durable", mode="plain", spec=SPEC)
    driver = ServerDriver(
        federation="other",
        mode=fed.driver.mode,
        strategy=fed.driver.strategy,
        model=fed.driver.model,
        spec=SPEC,
        rounds=fed.rounds,
        max_weight=1.0,
    )
    with pytest.raises(ConfigError):
        state.attach(driver)
    assert (fed.state_dir / JOURNAL_NAME).exists()


@pytest.mark.parametrize("secure", ["plain", "he"])
def test_a_crash_while_the_checkpoint_file_is_written_resumes_from_the_round_before(
    tmp_path: Path, secure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the journal names a checkpoint only once its file is on disk
    import securefl.runtime.server_state as server_state

    fed = Federation(tmp_path, secure, max_rounds=4)
    real = server_state.write_atomic

    def dies(path: Path, data: bytes) -> None:
        if path.name == "round-000002.safetensors":
            raise _Crash
        real(path, data)

    monkeypatch.setattr(server_state, "write_atomic", dies)
    fed.say_hello()
    with pytest.raises(_Crash):
        fed.run()
    monkeypatch.setattr(server_state, "write_atomic", real)
    fed.crash_and_restart()
    fed.run()
    check_run(fed, crashed_round=2)


def test_he_history_and_acknowledgements_survive_a_restart(tmp_path: Path) -> None:
    # a site that does not say hello again is sent only the aggregates it lacks
    from securefl.runtime.encrypted_model import EncryptedAggregatesModel
    from securefl.wire import unpack

    fed = _completed(tmp_path, "he", rounds=3)
    before = fed.driver.model
    assert isinstance(before, EncryptedAggregatesModel)
    fed.start_server()
    driver = fed.start_server()  # twice: a restart keeps what the next one needs
    after = driver.model
    assert isinstance(after, EncryptedAggregatesModel)
    assert after.aggregates == before.aggregates and len(after.aggregates) == 3
    assert after.acknowledged() == before.acknowledged() and after.acknowledged()
    site, held = next(iter(after.acknowledged().items()))
    assert unpack(after.payload_for(site))["start"] == held


def test_the_audit_never_reads_a_server_journal_as_privacy_records(tmp_path: Path) -> None:
    """A run folder or server kit holds the journal next to the records: `audit DIR` skips it."""
    from securefl.reports.audit import find_record_files

    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "site-a.jsonl").write_text("{}\n")
    (tmp_path / "server_state").mkdir()
    (tmp_path / "server_state" / JOURNAL_NAME).write_text("{}\n")
    assert find_record_files([tmp_path]) == [tmp_path / "records" / "site-a.jsonl"]
