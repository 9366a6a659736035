"""DPEvent: validation naming the field, strict JSON round trip, dp-accounting mapping."""

from __future__ import annotations

import dataclasses
import json

import dp_accounting
import pytest

from securefl.dp import DPEvent
from securefl.errors import ConfigError

GOOD = {
    "noise_multiplier": 1.1,
    "sample_rate": 0.01,
    "steps": 100,
    "max_grad_norm": 1.0,
    "sampling": "poisson",
    "secure_rng": False,
    "kind": "dpsgd",
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("noise_multiplier", 0.0),
        ("noise_multiplier", float("nan")),
        ("sample_rate", 0.0),
        ("sample_rate", 1.5),
        ("steps", 0),
        ("steps", 2.0),
        ("max_grad_norm", -1.0),
        ("sampling", "uniform"),
        ("secure_rng", 1),
        ("kind", "laplace"),
    ],
)
def test_invalid_field_is_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        DPEvent(**{**GOOD, field: value})


def test_gaussian_kind_needs_full_participation() -> None:
    with pytest.raises(ConfigError, match="sample_rate"):
        DPEvent(**{**GOOD, "kind": "gaussian"})
    DPEvent(**{**GOOD, "kind": "gaussian", "sample_rate": 1.0, "steps": 1})


def test_json_round_trip_is_exact() -> None:
    event = DPEvent(**GOOD)
    assert DPEvent.from_dict(json.loads(json.dumps(event.to_dict()))) == event


def test_from_dict_is_strict() -> None:
    with pytest.raises(ConfigError, match="unknown keys"):
        DPEvent.from_dict({**GOOD, "epsilon": 1.0})
    missing = dict(GOOD)
    del missing["steps"]
    with pytest.raises(ConfigError, match="steps"):
        DPEvent.from_dict(missing)


def test_event_is_frozen_and_keyword_only() -> None:
    event = DPEvent(**GOOD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.steps = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        DPEvent(1.1, 0.01, 100, 1.0)  # type: ignore[misc]


def test_int_and_float_inputs_give_equal_events() -> None:
    assert DPEvent(**{**GOOD, "max_grad_norm": 1}) == DPEvent(**GOOD)


def test_dp_accounting_mapping() -> None:
    event = DPEvent(**GOOD)
    assert event.to_dp_accounting() == dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(1.1)), 100
    )
    gauss = DPEvent(**{**GOOD, "kind": "gaussian", "sample_rate": 1.0, "steps": 1})
    assert gauss.to_dp_accounting() == dp_accounting.SelfComposedDpEvent(
        dp_accounting.GaussianDpEvent(1.1), 1
    )
    shuffled = DPEvent(**{**GOOD, "sampling": "shuffle"})
    assert shuffled.to_dp_accounting() == dp_accounting.NonPrivateDpEvent()
