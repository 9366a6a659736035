"""Bundled and user-supplied data for simulations."""

from securefl.data.csvsource import CsvTable, read_csv
from securefl.data.federations import (
    FederatedData,
    SiteData,
    breast_cancer_federation,
    csv_federation,
)
from securefl.data.schema import Column, Schema, load_schema

__all__ = [
    "Column",
    "CsvTable",
    "FederatedData",
    "Schema",
    "SiteData",
    "breast_cancer_federation",
    "csv_federation",
    "load_schema",
    "read_csv",
]
