"""A declared schema: every site scales its own CSV the same way, from no data.

Why declared: a scaler fitted on a site's records (or on everyone's) is a
statistic of the patients that DP-SGD does not account for, and sharing it
leaks one site's data into the others'. A schema is agreed by the
federation beforehand (clinical reference ranges, the codes a field may
take), so the transform is a fixed function of one record:

- ``numeric`` columns are clipped to the declared ``range = [lo, hi]`` and
  mapped linearly onto [-1, 1]; values outside the range are clipped and
  counted, so the site is told (only its own counts, nothing leaves it).
- ``categorical`` columns are one-hot encoded over the declared
  ``categories`` in their declared order. A value that is not declared is
  refused with the file and line: silently mapping it to an all-zero row
  would hide a coding error (``"M"`` vs ``"male"``) inside a model.

The file is TOML or JSON (by suffix) holding a list of columns::

    [[columns]]
    name = "age"
    type = "numeric"
    range = [18, 100]

    [[columns]]
    name = "sex"
    type = "categorical"
    categories = ["F", "M"]
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from securefl.errors import ConfigError, DataError

__all__ = ["Column", "Schema", "SchemaResult", "load_schema"]

COLUMN_TYPES = ("numeric", "categorical")


@dataclass(frozen=True, kw_only=True)
class Column:
    """One declared feature column."""

    name: str
    type: str
    range: tuple[float, float] | None = None
    categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("every schema column needs a non-empty 'name'")
        where = f"schema column {self.name!r}"
        if self.type == "numeric":
            rng = self.range
            if (
                rng is None
                or len(rng) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rng)
                or not all(math.isfinite(v) for v in rng)
                or not rng[0] < rng[1]
            ):
                raise ConfigError(f"{where}: a numeric column needs range = [lo, hi] with lo < hi")
            if self.categories:
                raise ConfigError(f"{where}: a numeric column takes no 'categories'")
        elif self.type == "categorical":
            cats = self.categories
            if len(cats) < 1 or not all(isinstance(c, str) and c.strip() for c in cats):
                raise ConfigError(
                    f'{where}: a categorical column needs categories = ["a", "b", ...]'
                )
            if len(set(cats)) != len(cats):
                raise ConfigError(f"{where}: a category is declared twice")
            if self.range is not None:
                raise ConfigError(f"{where}: a categorical column takes no 'range'")
        else:
            raise ConfigError(f"{where}: type must be one of {COLUMN_TYPES}, got {self.type!r}")

    @property
    def width(self) -> int:
        """How many model inputs this column becomes."""
        return 1 if self.type == "numeric" else len(self.categories)

    def feature_names(self) -> list[str]:
        if self.type == "numeric":
            return [self.name]
        return [f"{self.name}={c}" for c in self.categories]


@dataclass(frozen=True)
class SchemaResult:
    """One site's transformed features and how many values were clipped, per column."""

    features: npt.NDArray[np.float32]
    clipped: Mapping[str, int] = field(default_factory=dict)

    def clip_warning(self, where: str) -> str | None:
        """One line for the site's user, or ``None`` when nothing was clipped."""
        if not self.clipped:
            return None
        total = sum(self.clipped.values())
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(self.clipped.items()))
        return (
            f"{where}: {total} value(s) outside the schema's declared range were clipped "
            f"({parts}); widen the range in the schema if they are valid"
        )


@dataclass(frozen=True)
class Schema:
    """The federation's declared columns, in model-input order."""

    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        if not self.columns:
            raise ConfigError("a schema declares at least one column")
        names = [c.name for c in self.columns]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"schema column {dup[0]!r} is declared twice")

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(n for c in self.columns for n in c.feature_names())

    def transform(
        self, source: str, header: Sequence[str], rows: Sequence[tuple[int, Sequence[str]]]
    ) -> SchemaResult:
        """Transform ``rows`` (line number, cells in ``header`` order) record by record.

        Every CSV feature column must be declared and every declared column
        present: a column the federation did not agree on is refused rather
        than dropped or guessed.
        """
        declared = {c.name for c in self.columns}
        extra = [h for h in header if h not in declared]
        if extra:
            raise DataError(
                f"{source}: column {extra[0]!r} is not declared in the schema; declare it "
                "(numeric with a range, or categorical with categories) or remove it"
            )
        missing = [c.name for c in self.columns if c.name not in header]
        if missing:
            raise DataError(f"{source}: the schema declares {missing[0]!r}, absent from the file")
        at = {h: i for i, h in enumerate(header)}
        out = np.zeros((len(rows), sum(c.width for c in self.columns)), dtype=np.float32)
        clipped: dict[str, int] = {}
        offset = 0
        for col in self.columns:
            cells = [(lineno, cells[at[col.name]].strip()) for lineno, cells in rows]
            if col.type == "numeric":
                values, n_clipped = _numeric(source, col, cells)
                out[:, offset] = values
                if n_clipped:
                    clipped[col.name] = n_clipped
            else:
                out[:, offset : offset + col.width] = _one_hot(source, col, cells)
            offset += col.width
        return SchemaResult(features=out, clipped=clipped)


def _numeric(
    source: str, col: Column, cells: Sequence[tuple[int, str]]
) -> tuple[npt.NDArray[np.float32], int]:
    assert col.range is not None
    lo, hi = float(col.range[0]), float(col.range[1])
    raw = np.empty(len(cells), dtype=np.float64)
    for i, (lineno, cell) in enumerate(cells):
        try:
            raw[i] = float(cell)
        except ValueError:
            raise DataError(
                f"{source} line {lineno}: column {col.name!r} is not a number: {cell!r}"
            ) from None
        if not math.isfinite(raw[i]):
            raise DataError(f"{source} line {lineno}: column {col.name!r} is {cell}")
    n_clipped = int(np.count_nonzero((raw < lo) | (raw > hi)))
    scaled = 2.0 * (np.clip(raw, lo, hi) - lo) / (hi - lo) - 1.0
    return scaled.astype(np.float32), n_clipped


def _one_hot(source: str, col: Column, cells: Sequence[tuple[int, str]]) -> npt.NDArray[np.float32]:
    index = {c: i for i, c in enumerate(col.categories)}
    out = np.zeros((len(cells), col.width), dtype=np.float32)
    for i, (lineno, cell) in enumerate(cells):
        if cell not in index:
            raise DataError(
                f"{source} line {lineno}: column {col.name!r} has {cell!r}, not a declared "
                f"category ({', '.join(col.categories)}); add it to the schema or recode it"
            )
        out[i, index[cell]] = 1.0
    return out


def load_schema(path: str | Path) -> Schema:
    """Read a schema file (``.toml`` or ``.json``); every error names the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such schema file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the schema file ({exc})") from None
    try:
        doc: Any = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ConfigError(f"{path}: not valid {kind} ({exc})") from None
    try:
        return schema_from_dict(doc)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def schema_from_dict(doc: Any) -> Schema:
    """A :class:`Schema` from ``{"columns": [{name, type, range | categories}, ...]}``."""
    if not isinstance(doc, dict) or set(doc) != {"columns"} or not isinstance(doc["columns"], list):
        raise ConfigError("a schema holds exactly one list 'columns' ([[columns]] in TOML)")
    columns = []
    for entry in doc["columns"]:
        if not isinstance(entry, dict):
            raise ConfigError("every schema column must be a table")
        unknown = sorted(set(entry) - {"name", "type", "range", "categories"})
        if unknown:
            raise ConfigError(f"unknown schema key {unknown[0]!r} (name, type, range, categories)")
        rng = entry.get("range")
        if rng is not None and (not isinstance(rng, list) or len(rng) != 2):
            raise ConfigError(f"schema column {entry.get('name')!r}: range must be [lo, hi]")
        cats = entry.get("categories", [])
        if not isinstance(cats, list):
            raise ConfigError(f"schema column {entry.get('name')!r}: categories must be a list")
        columns.append(
            Column(
                name=entry.get("name", ""),
                type=entry.get("type", ""),
                range=None if rng is None else (rng[0], rng[1]),
                categories=tuple(cats),
            )
        )
    return Schema(columns=tuple(columns))
