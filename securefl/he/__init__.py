"""Homomorphic aggregation: the server adds ciphertexts and never holds a secret key.

Sites share one secret TenSEAL context (CKKS on floats or BFV on quantized
integers, see :mod:`securefl.he._presets`); the server loads only
``SecretContext.public_context_bytes()``. Read ``threat_models/he.md`` before
deploying: every site holds the same key, so one site colluding with the
server can read every update.
"""

from securefl.he._aggregator import (
    STAGE_UPDATE,
    HEServer,
    HEServerMode,
    HESite,
    HESiteMode,
    decrypt_aggregate,
    decrypt_sum,
)
from securefl.he._context import PublicContext, SecretContext
from securefl.he._presets import (
    BFV_N4096,
    CKKS_N4096,
    CKKS_N8192,
    CKKS_N8192_4PRIMES,
    DEFAULT_PRESET,
    PRESETS,
    HEPreset,
    preset_by_name,
)

__all__ = [
    "BFV_N4096",
    "CKKS_N4096",
    "CKKS_N8192",
    "CKKS_N8192_4PRIMES",
    "DEFAULT_PRESET",
    "PRESETS",
    "STAGE_UPDATE",
    "HEPreset",
    "HEServer",
    "HEServerMode",
    "HESite",
    "HESiteMode",
    "PublicContext",
    "SecretContext",
    "decrypt_aggregate",
    "decrypt_sum",
    "preset_by_name",
]
