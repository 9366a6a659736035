"""Homomorphic aggregation: the server adds ciphertexts and never holds a secret key.

Sites share one secret TenSEAL context (CKKS on floats or BFV on quantized
integers, see :mod:`securefl.he._presets`); the server loads only
``SecretContext.public_context_bytes()``. Read ``threat_models/he.md`` before
deploying: every site holds the same key, so one site colluding with the
server can read every update.

Contexts are signed by the site that made them and every upload by its
sender (Ed25519 identities on the roster, :mod:`securefl.he._trust`); the
server adds the checked uploads and sends each site only the sum with the
signed headers of its summands (at least :data:`MIN_SUMMANDS`, the site's
own among them), and a site refuses a sum that honest clipped inputs cannot
produce (:mod:`securefl.he._decrypt`). That the sum is exactly the listed
uploads is the server's word (``threat_models/he.md``). Modules: ``_presets`` (parameter sets),
``_context`` (secret/public contexts), ``_codec`` (chunks, structural checks),
``_pool`` (helper processes), ``_fixed_point`` (BFV quantization),
``_messages`` (byte formats), ``_site`` / ``_server`` (the two halves),
``_decrypt`` (opening an aggregate), ``_delivery`` (the secret context sealed
from the keymaker site to each other site, relayed by a server that cannot
open it) and ``_relay`` (that pre-round key step, sans-IO).
"""

from securefl.he._context import PublicContext, SecretContext
from securefl.he._decrypt import OpenedAggregate, decrypt_aggregate, decrypt_sum, open_aggregate
from securefl.he._delivery import KeyMaterial, make_key_material, open_bundle, seal_bundle
from securefl.he._messages import STAGE_UPDATE
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
from securefl.he._relay import BUNDLE_STAGE, KEYS_STAGE, KeyRelay, SiteKeys
from securefl.he._server import MIN_SUMMANDS, HEServer, HEServerMode
from securefl.he._site import HESite, HESiteMode, OwnUpload

__all__ = [
    "BFV_N4096",
    "BUNDLE_STAGE",
    "CKKS_N4096",
    "CKKS_N8192",
    "CKKS_N8192_4PRIMES",
    "DEFAULT_PRESET",
    "KEYS_STAGE",
    "MIN_SUMMANDS",
    "PRESETS",
    "STAGE_UPDATE",
    "HEPreset",
    "HEServer",
    "HEServerMode",
    "HESite",
    "HESiteMode",
    "KeyMaterial",
    "KeyRelay",
    "OpenedAggregate",
    "OwnUpload",
    "PublicContext",
    "SecretContext",
    "SiteKeys",
    "decrypt_aggregate",
    "decrypt_sum",
    "make_key_material",
    "open_aggregate",
    "open_bundle",
    "preset_by_name",
    "seal_bundle",
]
