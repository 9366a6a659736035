"""Server-side strategies; they see sums, never one site's update."""

from securefl.strategy.adaptive import FedAdam
from securefl.strategy.base import Strategy
from securefl.strategy.fedavg import FedAvg, FedAvgM, FedProx, make_strategy

__all__ = ["FedAdam", "FedAvg", "FedAvgM", "FedProx", "Strategy", "make_strategy"]
