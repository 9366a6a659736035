"""A user's own model and training loop in a LocalFederation: errors where they happen.

An error at a site is raised by ``run()`` (not left in an attribute nobody
reads); a model DP-SGD cannot train is refused once, in one paragraph, when
the federation is made; and the fix that paragraph suggests works end to end.
"""

import gc
import logging
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.aggregation.plain import PLAIN_WARNING
from securefl.config import DPConfig, FederationConfig, RoundConfig, StrategyConfig, TrainConfig
from securefl.data import breast_cancer_federation
from securefl.dp import make_private
from securefl.errors import ConfigError, UnsupportedModelError
from securefl.simulation import LocalFederation, run_simulation

pytestmark = pytest.mark.slow

SITES = ["site-a", "site-b", "site-c"]


def _toy(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))


def _federation(tmp_path, model, *, rounds=3, secure="plain", **kw):
    return LocalFederation(
        site_names=SITES,
        initial_model=model,
        dp=kw.pop("dp", DPConfig(epsilon=2.0, batch_size=32)),
        train=TrainConfig(),
        rounds=RoundConfig(max_rounds=rounds, stage_timeout_seconds=60),
        strategy=StrategyConfig(),
        secure=secure,
        max_weight=1000.0,
        workdir=kw.pop("workdir", tmp_path),
        **kw,
    )


def _loop(site, model, *, fail_at=None, fix_model=None):
    data = _toy(hash(site.name) % 100)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = DataLoader(data, batch_size=32)
    kwargs = {} if fix_model is None else {"fix_model": fix_model}
    model, optimizer, loader = site.privatize(model, optimizer, loader, **kwargs)
    for rnd in site.rounds(model):
        if rnd.number == fail_at:
            raise RuntimeError(f"the data loader of {site.name} broke")
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            out = model(x)
            (nn.functional.cross_entropy(out, y) if len(y) else out.sum()).backward()
            optimizer.step()
        rnd.submit(num_examples=len(data))


def _linear():
    return nn.Sequential(nn.Linear(8, 2))


def test_an_unexpected_site_error_is_raised_by_run_and_stops_the_run(tmp_path):
    fed = _federation(tmp_path, _linear(), rounds=6)

    def train(site):
        _loop(site, _linear(), fail_at=2 if site.name == "site-b" else None)

    with pytest.raises(RuntimeError, match="data loader of site-b broke") as info:
        fed.run(train)
    assert any("site-b" in note for note in getattr(info.value, "__notes__", []))
    # the run stopped there: round 2 never completed and no round 3 opened
    assert fed.driver.completed_rounds == 1 and fed.driver.current_round == 2
    assert fed.driver.finish_reason


def test_a_site_whose_model_differs_raises_a_config_error_naming_the_parameter(tmp_path):
    fed = _federation(tmp_path, _linear(), rounds=2)

    def train(site):
        _loop(site, nn.Sequential(nn.Linear(8, 3)) if site.name == "site-c" else _linear())

    with pytest.raises(ConfigError, match=r"'0\.weight' is \[3, 8\] here, \[2, 8\]"):
        fed.run(train)


def test_expected_endings_are_reported_in_what_run_returns(tmp_path):
    fed = _federation(tmp_path, _linear(), rounds=2, dropouts={"site-b": "update"})
    run = fed.run(lambda site: _loop(site, _linear()))
    assert set(run.endings) == {"site-b"} and "vanished" in run.endings["site-b"]
    assert run.completed_rounds == 2


def test_a_budget_that_runs_out_is_an_ending_not_an_error(tmp_path):
    # σ fixed so that one round fits ε = 0.5 (0.39) and a second does not
    dp = DPConfig(epsilon=0.5, batch_size=32, noise_multiplier=4.0)
    fed = _federation(tmp_path, _linear(), rounds=4, dp=dp)
    run = fed.run(lambda site: _loop(site, _linear()))
    assert set(run.endings) == set(SITES)
    assert all("budget" in why for why in run.endings.values())
    assert run.completed_rounds == 1


def _batchnorm_model():
    return nn.Sequential(
        nn.Linear(8, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Linear(16, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Linear(16, 2),
    )


def _assert_one_short_paragraph(message, where):
    assert "'1'" in message and "'4'" in message  # both layers, by name
    assert "GroupNorm" in message and where in message  # the fix, and where to pass it
    assert message.count("BatchNorm normalises") == 1  # the reason once, not once per layer
    assert "\n" not in message and len(message) < 450
    assert "We offer utilities" not in message  # not Opacus's text


def test_batchnorm_is_refused_once_in_one_paragraph_when_the_federation_is_made(tmp_path):
    with pytest.raises(UnsupportedModelError) as info:
        _federation(tmp_path, _batchnorm_model())
    _assert_one_short_paragraph(str(info.value), "fix_model=True to LocalFederation")
    assert not (tmp_path / "state").exists()  # refused before any site was built


def test_batchnorm_at_a_site_gets_the_same_paragraph():
    model = _batchnorm_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(UnsupportedModelError) as info:
        make_private(model, optimizer, DataLoader(_toy(0)), noise_multiplier=1.0, max_grad_norm=1.0)
    _assert_one_short_paragraph(str(info.value), "fix_model=True")


def test_fix_model_works_end_to_end_fixing_the_initial_model_once(tmp_path):
    fed = _federation(tmp_path, _batchnorm_model(), rounds=2, fix_model=True)
    kinds = {type(m).__name__ for m in fed.initial_model.modules()}
    assert "GroupNorm" in kinds and not any(k.startswith("BatchNorm") for k in kinds)
    # the user's loop is unchanged: it builds its BatchNorm model and privatizes it
    run = fed.run(lambda site: _loop(site, _batchnorm_model()))
    assert [h.status for h in run.history] == ["aggregated", "aggregated"]
    assert run.endings == {}


def test_warnings_come_once_not_once_per_round(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="securefl")
    fed = _federation(tmp_path, _linear(), rounds=4, secure="plain")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        run = fed.run(lambda site: _loop(site, _linear()))
    assert run.completed_rounds == 4
    plain = [r for r in caplog.records if r.getMessage() == PLAIN_WARNING]
    assert len(plain) == 1
    hooks = [w for w in seen if "Full backward hook" in str(w.message)]
    assert len(hooks) <= 1, [str(w.message) for w in seen]


def test_torch_hook_warning_does_not_come_back_every_round():
    # The mechanism, in one thread: each round the ledger's accountants enter
    # warnings.catch_warnings, which resets Python's once-per-line registry, so
    # torch's warning about Opacus's hook came back every round.
    model = _linear()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")  # Python's own default: once per line
        private = make_private(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            DataLoader(_toy(0), batch_size=32),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
        )
        x, y = _toy(1).tensors
        for _ in range(3):  # three rounds
            with warnings.catch_warnings():  # what the accountant does
                pass
            private.optimizer.zero_grad()
            nn.functional.cross_entropy(private.model(x[:32]), y[:32]).backward()
    hooks = [w for w in seen if "Full backward hook" in str(w.message)]
    assert len(hooks) <= 1


def test_no_temporary_folder_is_left_behind(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    run_simulation(
        breast_cancer_federation(sites=3, seed=0),
        FederationConfig(
            secure="plain",
            dp=DPConfig(epsilon=1.0, batch_size=32),
            train=TrainConfig(),
            rounds=RoundConfig(max_rounds=1, stage_timeout_seconds=60),
            strategy=StrategyConfig(),
        ),
    )
    assert list(scratch.iterdir()) == []
    # the Python API: close() (or garbage collection) removes the folder it made
    fed = _federation(tmp_path, _linear(), workdir=None)
    made = fed.workdir
    assert made.parent == scratch and made.exists()
    fed.close()
    assert not made.exists()
    fed = _federation(tmp_path, _linear(), workdir=None)
    made = fed.workdir
    del fed
    gc.collect()
    assert not made.exists()
