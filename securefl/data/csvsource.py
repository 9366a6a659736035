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

__all__ = ["CsvTable", "read_csv"]


@dataclass(frozen=True)
class CsvTable:
    """Features and raw labels from one CSV file."""

    path: Path
    feature_names: tuple[str, ...]
    features: npt.NDArray[np.float64]
    labels: tuple[str, ...]


def read_csv(path: str | Path, *, label: str) -> CsvTable:
    """Read a numeric CSV with a header row; ``label`` names the target column."""
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
    feats: list[list[float]] = []
    labels: list[str] = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        values, label_value = _parse_row(path, lineno, row, header, label_at)
        feats.append(values)
        labels.append(label_value)
    if len(feats) < 10:
        raise DataError(f"{path}: only {len(feats)} data rows; a site needs at least 10")
    return CsvTable(
        path=path,
        feature_names=names,
        features=np.asarray(feats, dtype=np.float64),
        labels=tuple(labels),
    )


def _parse_row(
    path: Path, lineno: int, row: list[str], header: list[str], label_at: int
) -> tuple[list[float], str]:
    """One data row as floats plus its label, or a DataError naming file and line."""
    if len(row) != len(header):
        raise DataError(f"{path} line {lineno}: expected {len(header)} fields, got {len(row)}")
    values: list[float] = []
    for i, cell in enumerate(row):
        if i == label_at:
            continue
        try:
            value = float(cell)
        except ValueError:
            raise DataError(
                f"{path} line {lineno}: column {header[i]!r} is not a number: {cell!r}"
            ) from None
        if not math.isfinite(value):
            raise DataError(f"{path} line {lineno}: column {header[i]!r} is {cell.strip()}")
        values.append(value)
    if not row[label_at].strip():
        raise DataError(f"{path} line {lineno}: the label {header[label_at]!r} is empty")
    return values, row[label_at].strip()
