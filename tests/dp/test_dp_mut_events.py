"""DPEvent and SkellamEvent: a refused field is named, and a record's bytes do not depend on
whether a number was given as an int or a float.

A user-facing refusal names the setting to fix; for the Skellam mechanism's own
parameters that is checked here through both doors (the constructor and
``SkellamEvent.create``). The events are written into signed, hash-chained
records as JSON: an event built with ``sample_rate=1`` and one built with
``1.0`` are the same event and must give the same bytes, or an auditor's
recomputed record would not match the signed one.
"""

from __future__ import annotations

import json
import math

import pytest

from securefl.dp import DPEvent
from securefl.dp.events import SkellamEvent
from securefl.errors import ConfigError

SKELLAM = dict(
    mu_total=4.0e4,
    l1_sensitivity=600.0,
    l2_sensitivity=100.0,
    shares=2,
    sample_rate=0.01,
    steps=1,
    max_grad_norm=1.0,
    secure_rng=True,
)


@pytest.mark.parametrize("value", [math.nan, "0.01", math.inf])
def test_a_sample_rate_that_is_not_a_finite_number_is_refused_by_name(value: object) -> None:
    with pytest.raises(ConfigError, match=r"DPEvent\.sample_rate\b"):
        DPEvent(
            noise_multiplier=1.0,
            sample_rate=value,  # type: ignore[arg-type]
            steps=1,
            max_grad_norm=1.0,
            secure_rng=True,
        )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("l1_sensitivity", math.inf),
        ("l1_sensitivity", "600"),
        ("l1_sensitivity", 0.0),
        ("l2_sensitivity", math.nan),
        ("l2_sensitivity", 0.0),
        ("mu_total", "4e4"),
        ("mu_total", -1.0),
    ],
)
def test_a_bad_skellam_parameter_is_refused_by_name_through_create(
    field: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=rf"DPEvent\.{field}\b"):
        SkellamEvent.create(**{**SKELLAM, field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"), [("l1_sensitivity", math.inf), ("l1_sensitivity", 0.0)]
)
def test_a_bad_skellam_parameter_is_refused_by_name_by_the_constructor(
    field: str, value: object
) -> None:
    good = SkellamEvent.create(**SKELLAM).to_dict()  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=rf"DPEvent\.{field}\b"):
        DPEvent.from_dict({**good, field: value})


def _record_bytes(event: DPEvent) -> str:
    return json.dumps(event.to_dict(), sort_keys=True)


def test_int_and_float_inputs_give_byte_identical_records() -> None:
    as_float = DPEvent(
        noise_multiplier=2.0,
        sample_rate=1.0,
        steps=3,
        max_grad_norm=1.0,
        secure_rng=True,
        kind="gaussian",
    )
    as_int = DPEvent(
        noise_multiplier=2,
        sample_rate=1,
        steps=3,
        max_grad_norm=1,
        secure_rng=True,
        kind="gaussian",
    )
    assert _record_bytes(as_int) == _record_bytes(as_float)
    assert all(isinstance(as_int.to_dict()[k], float) for k in ("sample_rate", "max_grad_norm"))


def test_skellam_int_inputs_give_byte_identical_records() -> None:
    ints = {**SKELLAM, "mu_total": 40000, "l1_sensitivity": 600, "l2_sensitivity": 100}
    as_int = SkellamEvent.create(**ints)  # type: ignore[arg-type]
    as_float = SkellamEvent.create(**SKELLAM)  # type: ignore[arg-type]
    assert _record_bytes(as_int) == _record_bytes(as_float)
    data = as_int.to_dict()
    assert all(isinstance(data[k], float) for k in ("mu_total", "l1_sensitivity", "l2_sensitivity"))
