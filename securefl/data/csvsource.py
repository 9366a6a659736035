"""Loading a site's own CSV, with errors that name the file and the line.

A hospital's export is often messy; the user gets one precise line
("ward.csv line 17: column 'age' is not a number: 'n/a'") instead of a
traceback from deep inside NumPy.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from securefl.errors import DataError

__all__ = ["CsvRows", "CsvTable", "read_csv", "read_csv_rows"]


@dataclass(frozen=True)
class CsvTable:
    """Features and raw labels from one CSV file."""

    path: Path
    feature_names: tuple[str, ...]
    features: npt.NDArray[np.float64]
    labels: tuple[str, ...]


def read_csv(path: str | Path, *, label: str) -> CsvTable:
    """Read a numeric CSV with a header row; ``label`` names the target column."""
    raw = read_csv_rows(path, label=label)
    feats = [_parse_row(raw.path, lineno, cells, raw.feature_names) for lineno, cells in raw.rows]
    return CsvTable(
        path=raw.path,
        feature_names=raw.feature_names,
        features=np.asarray(feats, dtype=np.float64),
        labels=raw.labels,
    )


@dataclass(frozen=True)
class CsvRows:
    """A CSV's feature cells as text (for a declared schema), with line numbers and labels."""

    path: Path
    feature_names: tuple[str, ...]
    rows: tuple[tuple[int, tuple[str, ...]], ...]
    labels: tuple[str, ...]


def read_csv_rows(path: str | Path, *, label: str) -> CsvRows:
    """Read a CSV with a header row, keeping feature cells as text."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise DataError(f"{path}: the file is empty (a header row is required)")
    header = [h.strip() for h in rows[0]]
    if label not in header:
        raise DataError(f"{path}: no label column {label!r} (columns: {', '.join(header)})")
    if len(set(header)) != len(header):
        raise DataError(f"{path} line 1: a column name appears twice")
    label_at = header.index(label)
    names = tuple(h for i, h in enumerate(header) if i != label_at)
    if not names:
        raise DataError(f"{path}: no feature columns besides {label!r}")
    kept: list[tuple[int, tuple[str, ...]]] = []
    labels: list[str] = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path} line {lineno}: expected {len(header)} fields, got {len(row)}")
        if not row[label_at].strip():
            raise DataError(f"{path} line {lineno}: the label {label!r} is empty")
        kept.append((lineno, tuple(c for i, c in enumerate(row) if i != label_at)))
        labels.append(row[label_at].strip())
    if len(kept) < 10:
        raise DataError(f"{path}: only {len(kept)} data rows; a site needs at least 10")
    return CsvRows(path=path, feature_names=names, rows=tuple(kept), labels=tuple(labels))


def _parse_row(
    path: Path, lineno: int, cells: tuple[str, ...], names: tuple[str, ...]
) -> list[float]:
    """One row's feature cells as floats, or a DataError naming file and line."""
    values: list[float] = []
    for name, cell in zip(names, cells, strict=True):
        try:
            value = float(cell)
        except ValueError:
            raise DataError(
                f"{path} line {lineno}: column {name!r} is not a number: {cell!r}"
            ) from None
        if not math.isfinite(value):
            raise DataError(f"{path} line {lineno}: column {name!r} is {cell.strip()}")
        values.append(value)
    return values
