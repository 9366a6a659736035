"""Many sites from one data set, with label skew: ``simulate --partition dirichlet:ALPHA``.

Planning a federation of 50 or 500 hospitals needs sites whose patients
differ the way real hospitals' do. The usual model (Hsu, Qi and Brown 2019,
"Measuring the effects of non-identical data distribution") draws each
site's class proportions from a Dirichlet distribution around the overall
class mix: ``p_i ~ Dir(alpha * prior)``. A large ``alpha`` gives every site
the overall mix; a small one gives sites that see mostly one class.

Every record goes to exactly one site (the split is a partition), and every
site gets at least ``min_records`` records, so DP-SGD can run there: the
smallest site's training part must hold one expected Poisson batch
(:func:`min_records_for`). The floor is met by construction, not by
redrawing: site sizes are fixed first (the floor plus a share of the rest
drawn from a flat Dirichlet, so sizes, and so sample rates, differ as real
hospitals' do), then each site draws its labels from its own class mix
among the records still unassigned. Asking for more sites than the data can
give ``min_records`` each is refused.

The bundled data has 455 training patients, enough for ten sites; larger
federations use a generated task (scikit-learn's ``make_classification``
with a fixed seed), and the run says so in its output and ``summary.json``.
The seed is for the data split only, never for anything secret.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import train_test_split

from securefl.data.federations import (
    FederatedData,
    SiteData,
    breast_cancer_federation,
)
from securefl.errors import ConfigError, DataError

__all__ = [
    "BUNDLED_MAX_SITES",
    "GENERATED_RECORDS_PER_SITE",
    "dirichlet_partition",
    "label_skew",
    "min_records_for",
    "parse_partition",
    "partitioned_federation",
]

#: Above this many sites, ``--partition`` uses the generated task.
BUNDLED_MAX_SITES = 10
#: Mean records per site of the generated task.
GENERATED_RECORDS_PER_SITE = 150
_VALIDATION = 0.2  # each site keeps this share as its own validation set
_GENERATED = {"n_features": 20, "n_informative": 10, "n_redundant": 4, "n_classes": 4}

Indices = npt.NDArray[np.int64]


def parse_partition(spec: str) -> float:
    """``dirichlet:ALPHA`` -> ALPHA (> 0), or a one-line error naming the option."""
    kind, _, value = spec.partition(":")
    try:
        alpha = float(value)
    except ValueError:
        alpha = math.nan
    if kind != "dirichlet" or not (math.isfinite(alpha) and alpha > 0):
        raise ConfigError(
            f"--partition {spec!r}: expected dirichlet:ALPHA with ALPHA > 0 "
            "(e.g. dirichlet:0.5; smaller ALPHA, more label skew)"
        )
    return alpha


def min_records_for(batch_size: int) -> int:
    """The fewest records a site needs so its training part holds ``batch_size`` records.

    ``simulate`` keeps 20 % of a site's records for validation (rounded up,
    as scikit-learn's ``train_test_split`` does) and refuses a batch size
    above the smallest site's training records.
    """
    n = batch_size
    while n - math.ceil(_VALIDATION * n) < batch_size:
        n += 1
    return max(n, 2)


def dirichlet_partition(
    labels: npt.ArrayLike, sites: int, alpha: float, *, seed: int, min_records: int
) -> list[Indices]:
    """Split record indices into ``sites`` groups with Dirichlet label skew.

    Returns one sorted index array per site; together they hold every index
    of ``labels`` exactly once, and each holds at least ``min_records``.

    Raises:
        DataError: fewer than ``sites * min_records`` records.
    """
    y = np.asarray(labels, dtype=np.int64)
    n = len(y)
    if sites < 1 or min_records < 1 or not alpha > 0:
        raise ConfigError("dirichlet_partition needs sites >= 1, min_records >= 1, alpha > 0")
    if sites * min_records > n:
        raise DataError(
            f"{sites} sites need at least {sites * min_records} records "
            f"({min_records} per site so DP-SGD can run) but the data has {n}; "
            f"use at most {n // min_records} sites"
        )
    rng = np.random.default_rng(seed)  # data splitting only, not a security use
    classes, y_index = np.unique(y, return_inverse=True)
    remaining = np.bincount(y_index, minlength=len(classes)).astype(np.int64)
    prior = remaining / n
    # sizes: the floor plus a flat-Dirichlet share of the rest (sizes differ, sum is n)
    rest = n - sites * min_records
    sizes = min_records + rng.multinomial(rest, rng.dirichlet(np.ones(sites)))
    mixes = rng.dirichlet(alpha * prior, size=sites)
    counts = np.zeros((sites, len(classes)), dtype=np.int64)
    for i in rng.permutation(sites):  # no site is always served last
        need = int(sizes[i])
        while need > 0:  # terminates: the unassigned records always cover the need
            weights = np.where(remaining > 0, np.nan_to_num(mixes[i]), 0.0)
            if weights.sum() <= 0:  # this site's classes are used up: take what is left
                weights = (remaining > 0).astype(np.float64)
            draw = rng.multinomial(need, weights / weights.sum())
            take = np.minimum(draw, remaining)
            counts[i] += take
            remaining -= take
            need -= int(take.sum())
    pools = [rng.permutation(np.flatnonzero(y_index == c)) for c in range(len(classes))]
    starts = np.zeros(len(classes), dtype=np.int64)
    out: list[Indices] = []
    for i in range(sites):
        parts = []
        for c in range(len(classes)):
            parts.append(pools[c][starts[c] : starts[c] + counts[i, c]])
            starts[c] += counts[i, c]
        out.append(np.sort(np.concatenate(parts)).astype(np.int64))
    return out


def label_skew(labels: npt.ArrayLike, parts: Sequence[Indices]) -> float:
    """Mean total-variation distance between each site's label mix and the overall one.

    0 when every site has the overall mix; near 1 - (largest class share)
    when every site has a single class.
    """
    y = np.asarray(labels, dtype=np.int64)
    classes = np.unique(y)
    overall = np.array([np.mean(y == c) for c in classes])
    distances = [
        0.5 * float(np.abs(np.array([np.mean(y[p] == c) for c in classes]) - overall).sum())
        for p in parts
    ]
    return float(np.mean(distances))


def _generated(sites: int, seed: int, floor: int) -> tuple[np.ndarray, np.ndarray, str]:
    from sklearn.datasets import make_classification

    train = sites * max(GENERATED_RECORDS_PER_SITE, 2 * floor)  # a large batch, more records
    samples = math.ceil(train / (1 - _VALIDATION))  # and a held-out 20 % test set
    x, y = make_classification(n_samples=samples, random_state=seed, **_GENERATED)
    settings = ", ".join(f"{k}={v}" for k, v in _GENERATED.items())
    name = (
        "generated: scikit-learn make_classification("
        f"n_samples={samples}, {settings}, random_state={seed})"
    )
    return np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64), name


def partitioned_federation(
    *, sites: int, alpha: float, seed: int = 0, batch_size: int = 32
) -> FederatedData:
    """``sites`` hospitals with Dirichlet(``alpha``) label skew, each able to run DP-SGD.

    Up to :data:`BUNDLED_MAX_SITES` sites split the bundled breast-cancer
    data (its held-out test set kept); more split a generated task of
    :data:`GENERATED_RECORDS_PER_SITE` records per site on average (twice
    the floor for a batch above 60), named in the result's ``source``.
    """
    floor = min_records_for(batch_size)
    if sites <= BUNDLED_MAX_SITES:
        bundled = breast_cancer_federation(sites=2, seed=seed)  # its test split and transform
        x = np.concatenate([s for d in bundled.sites for s in (d.x_train, d.x_val)])
        y = np.concatenate([s for d in bundled.sites for s in (d.y_train, d.y_val)])
        x_test, y_test = bundled.x_test, bundled.y_test
        names, classes = bundled.feature_names, bundled.classes
        preprocessing = bundled.preprocessing
        source = "bundled: Wisconsin diagnostic breast cancer (scikit-learn), 569 patients"
    else:
        xs, ys, source = _generated(sites, seed, floor)
        rest, test = train_test_split(
            np.arange(len(ys)), test_size=_VALIDATION, random_state=seed, stratify=ys
        )
        x, y, x_test, y_test = xs[rest], ys[rest], xs[test], ys[test]
        names = tuple(f"x{i}" for i in range(xs.shape[1]))
        classes = tuple(f"class-{c}" for c in range(int(ys.max()) + 1))
        preprocessing = "none"
    parts = dirichlet_partition(y, sites, alpha, seed=seed, min_records=floor)
    width = len(str(sites))
    site_data = tuple(
        _split(f"site-{i:0{width}d}", x[p], y[p], seed + i) for i, p in enumerate(parts)
    )
    return FederatedData(
        sites=site_data,
        x_test=x_test,
        y_test=y_test,
        feature_names=names,
        classes=classes,
        preprocessing=preprocessing,
        source=f"{source}; {sites} sites, dirichlet:{alpha:g} label skew, seed {seed}",
    )


def _split(name: str, x: np.ndarray, y: np.ndarray, seed: int) -> SiteData:
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 and len(counts[counts > 0]) > 1 else None
    try:
        xt, xv, yt, yv = train_test_split(
            x, y, test_size=_VALIDATION, random_state=seed, stratify=stratify
        )
    except ValueError:  # too few of some class to stratify; the sizes are the same
        xt, xv, yt, yv = train_test_split(x, y, test_size=_VALIDATION, random_state=seed)
    return SiteData(name=name, x_train=xt, y_train=yt, x_val=xv, y_val=yv)
