"""Many unequal sites get their σ calibrated at once, and never under-noised."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from securefl.config import FederationConfig
from securefl.data.partition import partitioned_federation
from securefl.dp import DPEvent, epsilon
from securefl.simulation.noise_plan import MANY_SIZES, site_noise_multipliers


def _config(rounds: int = 3) -> FederationConfig:
    config = FederationConfig()
    return dataclasses.replace(
        config,
        rounds=dataclasses.replace(config.rounds, max_rounds=rounds),
        dp=dataclasses.replace(config.dp, batch_size=8),  # small batches: many distinct sizes
    )


@pytest.fixture(scope="module")
def many_sites():
    return partitioned_federation(sites=24, alpha=0.5, seed=0, batch_size=8)


def test_each_sites_sigma_meets_the_budget_on_its_own_event(many_sites) -> None:
    config = _config()
    noise = site_noise_multipliers(many_sites, config)
    assert set(noise) == {s.name for s in many_sites.sites}
    dp, epochs, rounds = config.dp, config.train.local_epochs, config.rounds.max_rounds
    for site in many_sites.sites:
        # the rate and steps Site.privatize derives from the built-in trainer's loader
        x = torch.zeros(site.num_examples, 1)
        batches = len(DataLoader(TensorDataset(x), batch_size=dp.batch_size))
        event = DPEvent(
            noise_multiplier=noise[site.name],
            sample_rate=1.0 / batches,
            steps=rounds * epochs * batches,
            max_grad_norm=dp.max_grad_norm,
            secure_rng=True,
        )
        spent = epsilon([event], delta=dp.delta, accountant=dp.accountant)
        assert spent <= dp.epsilon, (site.name, spent)
        assert spent > 0.9 * dp.epsilon, (site.name, spent)  # and not wastefully noisy


def test_few_sizes_a_fixed_sigma_or_distributed_privacy_keep_per_site_calibration(
    many_sites,
) -> None:
    few = dataclasses.replace(many_sites, sites=many_sites.sites[: MANY_SIZES - 1])
    assert site_noise_multipliers(few, _config()) == {}
    config = _config()
    fixed = dataclasses.replace(config, dp=dataclasses.replace(config.dp, noise_multiplier=1.5))
    assert site_noise_multipliers(many_sites, fixed) == {}
    assert math.isfinite(next(iter(site_noise_multipliers(many_sites, config).values())))
