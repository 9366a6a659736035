"""Whole federations in one process: the engine behind ``securefl simulate``."""

from securefl.simulation.federation import FederationRun, LocalFederation
from securefl.simulation.orchestrator import SimulationResult, SiteOutcome, run_simulation

__all__ = ["FederationRun", "LocalFederation", "SimulationResult", "SiteOutcome", "run_simulation"]
