"""Aggregation modes: each hides single updates differently (plain hides none)."""

from securefl.aggregation.base import (
    AggregateResult,
    AggregationMode,
    RoundContext,
    ServerAggregator,
    SiteAggregator,
)
from securefl.aggregation.plain import PLAIN_WARNING, PlainMode

__all__ = [
    "PLAIN_WARNING",
    "AggregateResult",
    "AggregationMode",
    "PlainMode",
    "RoundContext",
    "ServerAggregator",
    "SiteAggregator",
]
