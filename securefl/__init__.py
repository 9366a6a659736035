"""securefl: hospitals train one PyTorch model together.

No patient record leaves a site (DP-SGD at every site, with a budget each site
enforces), and the coordinating server learns only the aggregate of the
sites' updates (pairwise masking or homomorphic encryption). Every site signs
a hash-chained privacy record per round that anyone can audit.

This is the safe public API. Easy-to-misuse primitives live in
:mod:`securefl.hazmat` and are deliberately not re-exported here.
"""

from securefl.config import (
    DPConfig,
    FederationConfig,
    RoundConfig,
    SiteSpec,
    StrategyConfig,
    TrainConfig,
    load_federation,
)
from securefl.errors import (
    AbortError,
    BudgetExhaustedError,
    ConfigError,
    DataError,
    IntegrityError,
    OverflowRefusedError,
    ProtocolError,
    SecureFLError,
    TransportError,
    UnsupportedModelError,
    WireError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # imported lazily below: torch is slow to import
    from securefl.params import ParamSpec
    from securefl.runtime.site import Round, Site

_LAZY = {
    "ParamSpec": "securefl.params",
    "Round": "securefl.runtime.site",
    "Site": "securefl.runtime.site",
}


def __getattr__(name: str) -> object:
    """Import the torch-dependent names on first use, so ``securefl --help`` is quick."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'securefl' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "AbortError",
    "BudgetExhaustedError",
    "ConfigError",
    "DPConfig",
    "DataError",
    "FederationConfig",
    "IntegrityError",
    "OverflowRefusedError",
    "ParamSpec",
    "ProtocolError",
    "Round",
    "RoundConfig",
    "SecureFLError",
    "Site",
    "SiteSpec",
    "StrategyConfig",
    "TrainConfig",
    "TransportError",
    "UnsupportedModelError",
    "WireError",
    "__version__",
    "load_federation",
]
