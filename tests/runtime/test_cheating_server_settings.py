"""A cheating (or misconfigured) server's round settings cost the site no privacy.

Each case plays the server: it opens a round with one bad setting. The site
must refuse before it reserves anything in its ledger (ε spent 0, no pending
row) and before any update leaves. Moving a check after the reservation turns
the matching case red. A training loop that runs more epochs than the privacy
plan is stopped at its first extra noisy step, with exactly the steps it took
charged.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.aggregation import PlainMode
from securefl.config import DPConfig, RoundConfig, TrainConfig
from securefl.dp import planned_event
from securefl.errors import ConfigError, SecureFLError
from securefl.params import ParamSpec, model_vector
from securefl.runtime import messages as m
from securefl.runtime.global_model import PlainGlobalModel
from securefl.runtime.site import Site
from securefl.transport import MemoryHub
from securefl.wire import SERVER, Envelope, pack

N_EXAMPLES = 32


class _RefusingMode(PlainMode):
    """A mode whose site half refuses the round (as mask does for a bad cohort)."""

    def site(self, ctx, site_id):
        raise ConfigError("cohort refused by the mode")


def _site(tmp_path, *, mode=None, min_sites=2, local_epochs=1, epsilon=5.0):
    hub = MemoryHub()
    server = hub.connect(SERVER)
    site = Site(
        name="a",
        federation="f",
        transport=hub.connect("a"),
        mode=mode or PlainMode(),
        dp=DPConfig(epsilon=epsilon, noise_multiplier=1.0, batch_size=8),
        train=TrainConfig(local_epochs=local_epochs),
        rounds=RoundConfig(max_rounds=3, min_sites=min_sites, stage_timeout_seconds=5),
        state_dir=tmp_path,
        roster=("a", "b", "c"),
    )
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    data = TensorDataset(torch.randn(N_EXAMPLES, 3), torch.randint(0, 2, (N_EXAMPLES,)))
    model, opt, loader = site.privatize(
        model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(data, batch_size=8)
    )
    return server, site, model, opt, loader


def _fields(local, **overrides):
    spec = ParamSpec.from_state_dict(local._module.state_dict())
    fields = {
        "cohort": ["a", "b"],
        "model": PlainGlobalModel(model_vector(local, spec)).payload(),
        "spec": spec.to_dict(),
        "max_weight": 100.0,
        "min_sites": 2,
        "run": "0f",
        "config": {},
    }
    fields.update(overrides)
    return fields


def _open(server, fields, rnd=1):
    server.send(
        Envelope(
            federation="f",
            round=rnd,
            stage=m.ROUND_START,
            sender=SERVER,
            receiver="a",
            payload=pack(fields),
        )
    )


def _drain(server):
    out = []
    while (env := server.receive(timeout=0.05)) is not None:
        out.append(env)
    return out


def _other_model_payload(model):
    spec = ParamSpec.from_state_dict(model._module.state_dict())
    vector = model_vector(model, spec)
    vector[0] = np.nan
    return PlainGlobalModel(vector).payload()


BAD_SETTINGS = {
    "max_weight NaN": {"max_weight": math.nan},
    "max_weight inf": {"max_weight": math.inf},
    "max_weight negative": {"max_weight": -1.0},
    "max_weight a string": {"max_weight": "100"},
    "max_weight below the site's examples": {"max_weight": float(N_EXAMPLES - 1)},
    "min_sites 1": {"min_sites": 1},
    "min_sites a float": {"min_sites": 2.5},
    "cohort unsorted": {"cohort": ["b", "a"]},
    "cohort with a duplicate": {"cohort": ["a", "a", "b"]},
    "cohort without this site": {"cohort": ["b", "c"]},
    "cohort with a stranger": {"cohort": ["a", "mallory"]},
    "cohort of one": {"cohort": ["a"], "min_sites": 2},
    "cohort below its own min_sites": {"cohort": ["a", "b"], "min_sites": 3},
    "proximal_mu NaN": {"config": {"proximal_mu": math.nan}},
    "proximal_mu negative": {"config": {"proximal_mu": -1.0}},
    "proximal_mu huge": {"config": {"proximal_mu": 1e6}},
    "proximal_mu a bool": {"config": {"proximal_mu": True}},
    "local_epochs above the plan": {"config": {"local_epochs": 3}},
    "local_epochs a float": {"config": {"local_epochs": 1.0}},
    "unknown round setting": {"config": {"learning_rate": 10.0}},
    "spec of another model": {"spec": {"names": ["w"], "shapes": [[5]], "dtypes": ["float32"]}},
}


@pytest.mark.parametrize("overrides", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_a_bad_setting_is_refused_before_the_ledger_is_touched(tmp_path, overrides):
    server, site, model, _opt, _loader = _site(tmp_path)
    _open(server, _fields(model, **overrides))
    with pytest.raises(SecureFLError):
        for rnd in site.rounds(model):
            rnd.submit(num_examples=N_EXAMPLES)
    assert site.ledger.history() == []  # no reservation, nothing committed
    assert site.ledger.spent() == 0
    assert [e.stage for e in _drain(server)] == [m.HELLO, m.BYE]  # no update left


def test_a_global_model_with_nan_is_refused_before_the_ledger(tmp_path):
    server, site, model, _opt, _loader = _site(tmp_path)
    _open(server, _fields(model, model=_other_model_payload(model)))
    with pytest.raises(SecureFLError, match="NaN"):
        list(site.rounds(model))
    assert site.ledger.history() == []


def test_a_server_minimum_below_the_sites_own_is_refused(tmp_path):
    # the site will not be one of 3 when it requires 3, even if the server says 2 is enough
    server, site, model, _opt, _loader = _site(tmp_path, min_sites=3)
    _open(server, _fields(model, cohort=["a", "b", "c"], min_sites=2))
    with pytest.raises(SecureFLError, match="at least 3"):
        list(site.rounds(model))
    assert site.ledger.history() == []


def test_a_mode_refusing_the_round_costs_no_privacy(tmp_path):
    server, site, model, _opt, _loader = _site(tmp_path, mode=_RefusingMode())
    _open(server, _fields(model))
    with pytest.raises(ConfigError, match="refused by the mode"):
        list(site.rounds(model))
    assert site.ledger.history() == []


def test_valid_settings_are_accepted_and_reserved(tmp_path):
    """The control: the same server with good settings gets a round and a reservation."""
    server, site, model, _opt, _loader = _site(tmp_path)
    _open(server, _fields(model, config={"proximal_mu": 0.01, "local_epochs": 1}))
    rounds = site.rounds(model)
    rnd = next(rounds)
    assert rnd.number == 1
    (entry,) = site.ledger.history()
    assert entry.status == "pending"
    rounds.close()


def _train_epoch(model, opt, loader):
    taken = 0
    for x, y in loader:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y) if len(y) else model(x).sum()
        loss.backward()
        opt.step()
        taken += 1
    return taken


def test_poisson_epochs_have_the_planned_number_of_steps(tmp_path):
    # Opacus's Poisson loader yields len(loader) batches (some may be empty) every epoch
    _server, site, _model, _opt, loader = _site(tmp_path)
    planned = planned_event(
        noise_multiplier=1.0,
        sample_rate=site.private.sample_rate,
        epochs=1,
        max_grad_norm=1.0,
        secure_rng=False,
    )
    for _ in range(3):
        assert sum(1 for _ in loader) == len(loader) == planned.steps


def test_a_loop_running_three_epochs_is_stopped_in_round_one(tmp_path):
    server, site, model, opt, loader = _site(tmp_path, local_epochs=1)
    _open(server, _fields(model))
    taken = 0
    with pytest.raises(ConfigError, match="local_epochs=1"):
        for rnd in site.rounds(model):
            for _ in range(3):  # the config says one
                for x, y in loader:
                    opt.zero_grad()
                    loss = nn.functional.cross_entropy(model(x), y) if len(y) else model(x).sum()
                    loss.backward()
                    opt.step()
                    taken += 1
            rnd.submit(num_examples=N_EXAMPLES)
    assert taken == len(loader)  # the first step of the second epoch never ran
    (entry,) = site.ledger.history()
    assert entry.round_id == 1 and entry.status == "committed"
    assert entry.event.steps == taken  # charged exactly the steps taken
    assert [e.stage for e in _drain(server)] == [m.HELLO, m.BYE]  # nothing was sent


def test_a_private_step_outside_a_round_is_refused(tmp_path):
    _server, site, model, opt, loader = _site(tmp_path)
    with pytest.raises(ConfigError, match="outside a round"):
        _train_epoch(model, opt, loader)
    assert site.ledger.history() == []
    assert site.private.steps_taken() == 0  # refused before clipping and noise


def test_a_loop_within_its_plan_is_charged_its_steps(tmp_path):
    server, site, model, opt, loader = _site(tmp_path, local_epochs=2, epsilon=20.0)
    _open(server, _fields(model))
    rounds = site.rounds(model)
    rnd = next(rounds)
    taken = _train_epoch(model, opt, loader) + _train_epoch(model, opt, loader)
    rnd.submit(num_examples=N_EXAMPLES)
    (entry,) = site.ledger.history()
    assert entry.status == "committed" and entry.event.steps == taken == 2 * len(loader)
    rounds.close()
