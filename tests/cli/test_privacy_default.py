"""``simulate --privacy distributed`` picks its sample rate: option, then file, then q = 1.

q = 1 (every record each round) is the default because it is what
bench/privacy_utility.py measures best on the bundled data: smaller q with
proportionally more rounds was measured and was no better
(docs/distributed_dp.md, "Utility"). Changing the default means re-measuring
and updating that table; these tests pin which q a run gets, not its accuracy.
Runs are captured at ``run_simulation`` so no model is trained here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from click.testing import CliRunner

from securefl.cli import cli
from securefl.cli._privacy import DEFAULT_SAMPLE_RATE, with_privacy
from securefl.config import DistributedConfig, FederationConfig
from securefl.data.federations import FederatedData, breast_cancer_federation
from securefl.errors import ConfigError
from securefl.simulation import orchestrator


@pytest.fixture(scope="module")
def data() -> FederatedData:
    return breast_cancer_federation(sites=3, seed=0)


def _records(data: FederatedData) -> int:
    return sum(s.num_examples for s in data.sites)


def test_the_default_is_every_record_each_round(data: FederatedData) -> None:
    assert DEFAULT_SAMPLE_RATE == 1.0
    chosen = with_privacy(FederationConfig(), data, privacy="distributed", sample_rate=None)
    assert chosen.privacy == "distributed"
    assert chosen.distributed.sample_rate == DEFAULT_SAMPLE_RATE
    assert chosen.distributed.records == _records(data)
    assert chosen.distributed.expected_batch_size == _records(data)  # a full batch


def test_the_files_rate_wins_over_the_default_and_the_option_over_both(
    data: FederatedData,
) -> None:
    filed = replace(
        FederationConfig(),
        privacy="distributed",
        distributed=DistributedConfig(sample_rate=0.2, records=_records(data)),
    )
    assert with_privacy(filed, data, privacy=None, sample_rate=None).distributed.sample_rate == 0.2
    given = with_privacy(filed, data, privacy=None, sample_rate=0.5)
    assert given.distributed.sample_rate == 0.5


def test_local_is_left_as_it_was(data: FederatedData) -> None:
    config = FederationConfig()
    assert with_privacy(config, data, privacy=None, sample_rate=None) == config
    assert with_privacy(config, data, privacy="local", sample_rate=None) == config
    with pytest.raises(ConfigError, match="--sample-rate"):
        with_privacy(config, data, privacy="local", sample_rate=0.5)


def test_simulate_runs_distributed_at_the_default_rate(
    monkeypatch: pytest.MonkeyPatch, data: FederatedData
) -> None:
    seen: list[FederationConfig] = []

    def fake(_: Any, config: FederationConfig, **__: Any) -> orchestrator.SimulationResult:
        seen.append(config)
        return orchestrator.SimulationResult(
            secure=config.secure, rounds=0, finish_reason="captured", global_accuracy=0.0, sites=[]
        )

    monkeypatch.setattr(orchestrator, "run_simulation", fake)
    CliRunner().invoke(cli, ["simulate", "--privacy", "distributed"], catch_exceptions=False)
    assert [c.distributed.sample_rate for c in seen] == [DEFAULT_SAMPLE_RATE]
    assert seen[0].privacy == "distributed"
    assert seen[0].distributed.records == _records(data)  # simulate's bundled three sites
