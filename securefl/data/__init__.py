"""Bundled and user-supplied data for simulations."""

from securefl.data.csvsource import CsvTable, read_csv
from securefl.data.federations import (
    FederatedData,
    SiteData,
    breast_cancer_federation,
    csv_federation,
)

__all__ = [
    "CsvTable",
    "FederatedData",
    "SiteData",
    "breast_cancer_federation",
    "csv_federation",
    "read_csv",
]
