"""Data sets split into sites for simulation.

The bundled federation is scikit-learn's copy of the Wisconsin diagnostic
breast-cancer data (569 real patients). A stratified 20% is held out as a
test set no site ever sees ("future patients"); the rest is split into
hospitals that are *not* identically distributed: sites are ordered by
tumour size (mean radius), so one hospital sees mostly small tumours and
another mostly large ones, with some overlap. Each site keeps 20% of its
records as its own validation set.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import train_test_split

from securefl.data.csvsource import read_csv, read_csv_rows
from securefl.data.preprocess import public_range_scale, signed_log
from securefl.data.schema import Schema
from securefl.errors import DataError

__all__ = ["FederatedData", "SiteData", "breast_cancer_federation", "csv_federation"]

Array = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SiteData:
    """One hospital's records, already transformed record-wise."""

    name: str
    x_train: Array
    y_train: Labels
    x_val: Array
    y_val: Labels

    @property
    def num_examples(self) -> int:
        return int(self.x_train.shape[0])


@dataclass(frozen=True)
class FederatedData:
    """Sites, an optional held-out test set, and how features were transformed."""

    sites: tuple[SiteData, ...]
    x_test: Array | None
    y_test: Labels | None
    feature_names: tuple[str, ...]
    classes: tuple[str, ...]
    preprocessing: str
    #: one line per site whose records the schema had to clip (its own counts only)
    warnings: tuple[str, ...] = ()
    #: what the records are (shown by ``simulate`` and kept in ``summary.json``)
    source: str = ""

    @property
    def num_features(self) -> int:
        return len(self.feature_names)


def _site_names(n: int) -> list[str]:
    return [f"hospital-{chr(ord('a') + i)}" for i in range(n)]


def _split_site(name: str, x: Array, y: Labels, seed: int) -> SiteData:
    strat = y if min(np.bincount(y)) >= 2 else None
    xt, xv, yt, yv = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=strat)
    return SiteData(name=name, x_train=xt, y_train=yt, x_val=xv, y_val=yv)


def breast_cancer_federation(
    *, sites: int = 3, seed: int = 0, overlap: float = 0.3
) -> FederatedData:
    """The bundled data set split into ``sites`` non-identically distributed hospitals."""
    from sklearn.datasets import load_breast_cancer

    if not 2 <= sites <= 10:
        raise DataError(
            "the bundled data set supports 2 to 10 sites; for more, split a generated task "
            "with --partition dirichlet:ALPHA (securefl.data.partition)"
        )
    raw = load_breast_cancer()
    schema = json.loads(
        resources.files("securefl.data")
        .joinpath("breast_cancer_schema.json")
        .read_text(encoding="utf-8")
    )
    lows = [f["min"] for f in schema["features"]]
    highs = [f["max"] for f in schema["features"]]
    x = public_range_scale(np.asarray(raw.data, dtype=np.float64), lows, highs)
    y = (np.asarray(raw.target) == 0).astype(np.int64)  # 1 = malignant
    radius = np.asarray(raw.data[:, 0], dtype=np.float64)
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=0.2, random_state=seed, stratify=y)
    rng = np.random.default_rng(seed)  # data splitting only, not a security use
    order = rest[np.argsort(radius[rest], kind="stable")]
    assignment = np.repeat(np.arange(sites), int(np.ceil(len(order) / sites)))[: len(order)]
    mixed = rng.random(len(order)) < overlap
    assignment[mixed] = rng.integers(0, sites, int(mixed.sum()))
    site_data = tuple(
        _split_site(name, x[order[assignment == i]], y[order[assignment == i]], seed + i)
        for i, name in enumerate(_site_names(sites))
    )
    return FederatedData(
        sites=site_data,
        x_test=x[test],
        y_test=y[test],
        feature_names=tuple(f["name"] for f in schema["features"]),
        classes=("benign", "malignant"),
        preprocessing="public_ranges",
        source=f"bundled: Wisconsin diagnostic breast cancer (scikit-learn), 569 patients; "
        f"{sites} sites by tumour size",
    )


def csv_federation(
    paths: Sequence[tuple[str, str | Path]],
    *,
    label: str,
    seed: int = 0,
    schema: Schema | None = None,
) -> FederatedData:
    """Sites from their own CSV files (same columns); no global test set.

    With a ``schema`` every site transforms its records by the federation's
    declared ranges and categories (see :mod:`securefl.data.schema`); each
    site's clipping counts come back in ``warnings``, one line per site, and
    nothing computed from one site's records reaches another site. Without
    one, the record-wise signed-log transform only tames the scale.
    """
    if len(paths) < 2:
        raise DataError("a federation needs at least two sites' CSV files")
    if schema is None:
        tables = [(name, read_csv(path, label=label)) for name, path in paths]
        names = tables[0][1].feature_names
        features = [signed_log(t.features) for _, t in tables]
        sources = [(t.path, t.feature_names, t.labels) for _, t in tables]
        notes: list[str] = []
    else:
        raws = [(name, read_csv_rows(path, label=label)) for name, path in paths]
        names = schema.feature_names
        results = [schema.transform(str(r.path), r.feature_names, r.rows) for _, r in raws]
        features = [r.features for r in results]
        # the column sets may be ordered differently per file; the schema fixes the order
        sources = [(r.path, tuple(sorted(r.feature_names)), r.labels) for _, r in raws]
        notes = [
            line
            for (name, _), res in zip(raws, results, strict=True)
            if (line := res.clip_warning(name)) is not None
        ]
    first_path, first_names, _ = sources[0]
    for path, cols, _labels in sources[1:]:
        if cols != first_names:
            raise DataError(f"{path}: columns differ from {first_path}")
    classes = tuple(sorted({lab for _, _, labels in sources for lab in labels}))
    if len(classes) < 2:
        raise DataError(f"label column {label!r} has a single value across all sites")
    index = {c: i for i, c in enumerate(classes)}
    sites = []
    for i, ((name, _), x, (_, _, labels)) in enumerate(zip(paths, features, sources, strict=True)):
        ys = np.asarray([index[v] for v in labels], dtype=np.int64)
        sites.append(_split_site(name, x, ys, seed + i))
    return FederatedData(
        sites=tuple(sites),
        x_test=None,
        y_test=None,
        feature_names=names,
        classes=classes,
        preprocessing="signed_log" if schema is None else "schema",
        warnings=tuple(notes),
        source="own CSV files: " + ", ".join(Path(path).name for _, path in paths),
    )
