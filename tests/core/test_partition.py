"""Many sites with label skew: the split is a partition, skew follows α, floors hold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.data.partition import (
    dirichlet_partition,
    label_skew,
    min_records_for,
    parse_partition,
    partitioned_federation,
)
from securefl.errors import ConfigError, DataError


def _labels(n: int = 3000, classes: int = 4, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, n)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(50, 600),
    classes=st.integers(2, 5),
    sites=st.integers(1, 12),
    floor=st.integers(1, 40),
    alpha=st.floats(0.01, 100.0),
    seed=st.integers(0, 2**16),
)
def test_every_record_lands_at_exactly_one_site_and_every_site_meets_the_floor(
    n: int, classes: int, sites: int, floor: int, alpha: float, seed: int
) -> None:
    y = _labels(n, classes, seed)
    if sites * floor > n:
        with pytest.raises(DataError):
            dirichlet_partition(y, sites, alpha, seed=seed, min_records=floor)
        return
    parts = dirichlet_partition(y, sites, alpha, seed=seed, min_records=floor)
    assert len(parts) == sites
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(n))  # each record once, none lost
    assert min(len(p) for p in parts) >= floor


def test_label_skew_grows_as_alpha_shrinks() -> None:
    y = _labels()
    skews = [
        label_skew(y, dirichlet_partition(y, 50, alpha, seed=3, min_records=20))
        for alpha in (1000.0, 10.0, 1.0, 0.1)
    ]
    assert skews == sorted(skews)
    # a random equal split of these labels measures about 0.08 (sampling noise alone)
    assert skews[0] < 0.15  # large α: every site near the overall mix
    assert skews[-1] > 0.6  # small α: sites dominated by one class (the most is 0.75)


def test_sizes_differ_so_sample_rates_differ() -> None:
    parts = dirichlet_partition(_labels(), 50, 1.0, seed=0, min_records=20)
    assert len({len(p) for p in parts}) > 25


def test_same_seed_same_split_other_seed_other_split() -> None:
    y = _labels()
    a = dirichlet_partition(y, 20, 0.5, seed=7, min_records=30)
    b = dirichlet_partition(y, 20, 0.5, seed=7, min_records=30)
    c = dirichlet_partition(y, 20, 0.5, seed=8, min_records=30)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c, strict=True))


def test_too_many_sites_for_the_data_is_refused_naming_the_limit() -> None:
    y = _labels(500)
    with pytest.raises(DataError) as err:
        dirichlet_partition(y, 30, 1.0, seed=0, min_records=40)
    assert "at most 12 sites" in str(err.value)
    # the largest count that fits is accepted
    assert len(dirichlet_partition(y, 12, 1.0, seed=0, min_records=40)) == 12


@pytest.mark.parametrize("batch", [1, 5, 32, 64])
def test_min_records_leave_one_batch_after_the_validation_split(batch: int) -> None:
    n = min_records_for(batch)
    assert n - int(np.ceil(0.2 * n)) >= batch
    assert (n - 1) - int(np.ceil(0.2 * (n - 1))) < batch or n == 2


@pytest.mark.parametrize(
    "spec", ["dirichlet", "dirichlet:0", "dirichlet:-1", "iid:1", "dirichlet:x"]
)
def test_a_malformed_partition_is_refused(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_partition(spec)
    assert parse_partition("dirichlet:0.3") == 0.3


def test_bundled_data_for_few_sites_every_site_trains_a_batch() -> None:
    data = partitioned_federation(sites=10, alpha=0.3, seed=0, batch_size=32)
    assert data.source.startswith("bundled:")
    assert min(s.num_examples for s in data.sites) >= 32
    assert sum(s.num_examples + len(s.y_val) for s in data.sites) == 455  # 569 - test set
    assert data.x_test is not None and len(data.x_test) == 114


def test_generated_task_for_many_sites_is_named_and_seeded() -> None:
    a = partitioned_federation(sites=60, alpha=0.5, seed=2, batch_size=16)
    b = partitioned_federation(sites=60, alpha=0.5, seed=2, batch_size=16)
    assert "make_classification" in a.source and "random_state=2" in a.source
    assert len(a.sites) == 60 and min(s.num_examples for s in a.sites) >= 16
    assert all(np.array_equal(s.x_train, t.x_train) for s, t in zip(a.sites, b.sites, strict=True))
