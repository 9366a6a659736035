"""Distributed-DP (Skellam) events: validation, the ledger, composition with local DP-SGD."""

from __future__ import annotations

import json
import math

import pytest

from securefl.dp import DPEvent, PrivacyLedger, epsilon
from securefl.dp.events import SkellamEvent
from securefl.dp.skellam_accounting import composed_epsilon, skellam_epsilon
from securefl.errors import BudgetExhaustedError, ConfigError


def skellam(**over: object) -> SkellamEvent:
    kw: dict[str, object] = dict(
        mu_total=4.0e4,
        l1_sensitivity=600.0,
        l2_sensitivity=100.0,
        shares=2,
        sample_rate=0.01,
        steps=1,
        max_grad_norm=1.0,
        secure_rng=True,
    )
    kw.update(over)
    return SkellamEvent.create(**kw)  # type: ignore[arg-type]


def test_the_event_round_trips_through_json_as_a_skellam_event():
    event = skellam()
    data = json.loads(json.dumps(event.to_dict()))
    back = DPEvent.from_dict(data)
    assert isinstance(back, SkellamEvent) and back == event
    assert event.noise_multiplier == pytest.approx(math.sqrt(4.0e4) / 100.0)


@pytest.mark.parametrize(
    "over",
    [
        {"mu_total": 0.0},
        {"mu_total": -1.0},
        {"mu_total": math.inf},
        {"l1_sensitivity": 0.0},
        {"l2_sensitivity": -3.0},
        {"shares": 0},
        {"shares": 1.5},
        {"shares": True},
        {"sample_rate": 0.0},
        {"steps": 0},
    ],
)
def test_bad_parameters_are_refused(over):
    with pytest.raises(ConfigError):
        skellam(**over)


def test_a_noise_multiplier_that_does_not_match_the_variance_is_refused():
    """A record claiming σ for more noise than mu_total carries cannot be built or read."""
    data = skellam().to_dict()
    data["noise_multiplier"] *= 1.5
    with pytest.raises(ConfigError, match="noise_multiplier"):
        DPEvent.from_dict(data)


def test_skellam_kind_needs_the_mechanisms_parameters():
    with pytest.raises(ConfigError, match="SkellamEvent"):
        DPEvent(
            noise_multiplier=2.0,
            sample_rate=0.01,
            steps=1,
            max_grad_norm=1.0,
            secure_rng=True,
            kind="skellam",
        )
    data = skellam().to_dict()
    del data["shares"]
    with pytest.raises(ConfigError):
        DPEvent.from_dict(data)
    with pytest.raises(ConfigError, match="unknown"):
        DPEvent.from_dict({**skellam().to_dict(), "dimension": 10})


def test_dp_accounting_has_no_skellam_event_so_the_mapping_is_refused():
    with pytest.raises(ConfigError):
        skellam().to_dp_accounting()


def test_every_accountant_reports_the_skellam_rdp_bound():
    event = skellam(steps=200)
    expected = skellam_epsilon(
        mu=4.0e4,
        l1_sensitivity=600.0,
        l2_sensitivity=100.0,
        sample_rate=0.01,
        steps=200,
        delta=1e-5,
    )
    for accountant in ("prv", "rdp", "pld"):
        assert epsilon([event], delta=1e-5, accountant=accountant) == expected


def test_rounds_compose_and_merge_with_local_dpsgd_events():
    one = skellam(steps=1)
    assert epsilon([one] * 50, delta=1e-5) == epsilon([skellam(steps=50)], delta=1e-5)
    local = DPEvent(
        noise_multiplier=1.1, sample_rate=0.02, steps=100, max_grad_norm=1.0, secure_rng=True
    )
    both = epsilon([local, skellam(steps=50)], delta=1e-5)
    assert both > max(
        epsilon([local], delta=1e-5, accountant="rdp"), epsilon([skellam(steps=50)], delta=1e-5)
    )
    assert both == composed_epsilon(
        [(4.0e4, 600.0, 100.0, 0.01, 50)], [(1.1, 0.02, 100)], delta=1e-5
    )


def test_one_sites_share_alone_is_protected_less_and_exactly_by_its_own_variance():
    central = skellam(steps=100, shares=4)
    alone = central.share_event()
    assert alone.mu_total == central.mu_total / 4 and alone.shares == 1
    assert alone.noise_multiplier == pytest.approx(central.noise_multiplier / 2)
    assert epsilon([alone], delta=1e-5) > 1.5 * epsilon([central], delta=1e-5)
    assert skellam(shares=1).share_event() == skellam(shares=1)


def test_the_ledger_stores_skellam_events_and_refuses_past_the_budget(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = PrivacyLedger(path, site="a", epsilon_budget=1.0, delta=1e-5, accountant="prv")
    round_event = skellam(steps=100, mu_total=4.0e4)
    granted = 0
    with pytest.raises(BudgetExhaustedError):
        for r in range(10_000):
            res = ledger.reserve(r, round_event)
            ledger.commit(res, round_event)
            granted += 1
    assert granted >= 3
    reopened = PrivacyLedger(path, site="a", epsilon_budget=1.0, delta=1e-5, accountant="prv")
    events = reopened.events()
    assert all(isinstance(e, SkellamEvent) for e in events) and len(events) == granted
    assert reopened.spent() <= 1.0 < epsilon([*events, round_event], delta=1e-5)


def test_c_colluders_removing_their_own_shares_still_face_the_accounted_noise():
    """The adversary: c colluding sites know and subtract their shares from the unmasked sum.

    Each of the t sites that survive (the fewest the protocol unmasks) adds the
    share the event says (variance mu_total / (t - c)); what is left after c
    shares are removed must carry the variance the central ε was computed for.
    A share sized for t contributors instead of t - c leaves too little.
    """
    import numpy as np

    t, c = 6, 2
    event = skellam(mu_total=400.0, shares=t - c)
    share = event.share_event().mu_total
    rng = np.random.default_rng(0)  # test-only sampling of the known distribution
    draws = rng.poisson(share / 2, size=(t, 200_000)) - rng.poisson(share / 2, size=(t, 200_000))
    residual = draws[c:].sum(axis=0)  # the colluders' own shares subtracted exactly
    assert residual.var() >= 0.98 * event.mu_total
    too_small = draws[c:].sum(axis=0) * math.sqrt((t - c) / t)  # shares sized for t
    assert too_small.var() < 0.9 * event.mu_total


def test_the_masking_failure_epsilon_bounds_every_coalition_beyond_c():
    """With k honest shares left (1 <= k <= t - c) the ε lies between the two recorded numbers."""
    event = skellam(steps=200, shares=4)
    values = [
        epsilon([skellam(steps=200, shares=4, mu_total=event.mu_total * k / 4)], delta=1e-5)
        for k in (1, 2, 3, 4)
    ]
    assert values == sorted(values, reverse=True)
    assert values[0] == epsilon([event.share_event()], delta=1e-5)
    assert values[-1] == epsilon([event], delta=1e-5)
