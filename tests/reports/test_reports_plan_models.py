"""`securefl plan --privacy both`: local DP-SGD and distributed Skellam DP side by side."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from securefl.cli.plan import plan
from securefl.dp.accounting import epsilon
from securefl.dp.events import DPEvent, SkellamEvent
from securefl.errors import ConfigError
from securefl.reports.plan import compare_privacy_models
from securefl.reports.plan_query import rounded_sensitivities

Q = dict(sample_rate=0.01, steps=1000, delta=1e-5, dimension=31, clip_units=1024.0)
FLAGS = [
    "--privacy",
    "both",
    "--sample-rate",
    "0.01",
    "--steps",
    "1000",
    "--delta",
    "1e-5",
    "--dimension",
    "31",
]


def test_same_noise_the_sum_carries_sqrt_shares_times_it_and_gives_a_smaller_central_epsilon():
    m = compare_privacy_models(noise_multiplier=1.1, shares=4, **Q)
    assert m.share_noise_multiplier == pytest.approx(1.1)
    assert m.central_noise_multiplier == pytest.approx(1.1 * 2)
    local = DPEvent(
        noise_multiplier=1.1, sample_rate=0.01, steps=1000, max_grad_norm=1.0, secure_rng=True
    )
    assert m.local_epsilon == epsilon([local], delta=1e-5, accountant="prv")
    event = SkellamEvent.create(
        mu_total=m.mu_total,
        l1_sensitivity=m.l1_sensitivity,
        l2_sensitivity=m.l2_sensitivity,
        shares=4,
        sample_rate=0.01,
        steps=1000,
        max_grad_norm=1.0,
        secure_rng=True,
    )
    assert m.distributed_epsilon == epsilon([event], delta=1e-5)
    assert m.masking_failure_epsilon == epsilon([event.share_event()], delta=1e-5)
    assert m.distributed_epsilon < m.local_epsilon < m.masking_failure_epsilon * 1.5


def test_same_epsilon_each_site_adds_less_noise_with_more_shares():
    per_site = []
    for shares in (1, 2, 4, 8):
        m = compare_privacy_models(target_epsilon=1.0, shares=shares, **Q)
        assert m.distributed_epsilon <= 1.0 and m.local_epsilon <= 1.0
        assert m.central_noise_multiplier == pytest.approx(
            m.share_noise_multiplier * math.sqrt(shares)
        )
        per_site.append(m.share_noise_multiplier)
    assert per_site == sorted(per_site, reverse=True)
    assert (
        per_site[-1]
        < 0.5 * compare_privacy_models(target_epsilon=1.0, shares=1, **Q).local_noise_multiplier
    )


def test_rounding_sensitivities():
    # the mechanism's bounds, rounded up to the next float: never below the exact value
    for (clip, d), (exact_l1, exact_l2) in {(100.0, 4): (204.0, 102.0),
                                            (1.0, 10**6): (1001000.0, 1001.0)}.items():  # fmt: skip
        l1, l2 = rounded_sensitivities(clip_units=clip, dimension=d)
        assert exact_l2 <= l2 == pytest.approx(exact_l2, rel=1e-12)
        assert exact_l1 <= l1 == pytest.approx(exact_l1, rel=1e-12)
    for bad in ({"clip_units": 0.0, "dimension": 3}, {"clip_units": 1.0, "dimension": 0}):
        with pytest.raises(ConfigError):
            rounded_sensitivities(**bad)


@pytest.mark.parametrize(
    ("over", "flag"),
    [
        ({"shares": 0}, "--shares"),
        ({"dimension": 0}, "--dimension"),
        ({"sample_rate": 1.5}, "--sample-rate"),
    ],
)
def test_bad_values_are_refused_naming_the_flag(over, flag):
    kw = {**Q, "shares": 2, "noise_multiplier": 1.0, **over}
    with pytest.raises(ConfigError, match=flag):
        compare_privacy_models(**kw)


def test_cli_prints_both_models_side_by_side_and_as_json():
    result = CliRunner().invoke(plan, [*FLAGS, "--noise-multiplier", "1.1"])
    assert result.exit_code == 0, result.output
    assert "local DP-SGD" in result.output and "distributed" in result.output
    assert "masking fails" in result.output
    data = json.loads(CliRunner().invoke(plan, [*FLAGS, "--epsilon", "1", "--json"]).stdout)
    assert data["question"] == "same_epsilon" and data["shares"] == 2
    assert data["distributed_epsilon"] <= 1.0


def test_cli_refuses_incomplete_or_mixed_questions():
    missing = CliRunner().invoke(
        plan,
        [
            "--privacy",
            "both",
            "--sample-rate",
            "0.01",
            "--steps",
            "10",
            "--delta",
            "1e-5",
            "--noise-multiplier",
            "1",
        ],
    )
    assert missing.exit_code != 0 and "--dimension" in missing.output
    bad = CliRunner().invoke(plan, ["--privacy", "central", *FLAGS[2:]])
    assert bad.exit_code != 0 and "--privacy" in bad.output
