"""Cryptographic primitives behind secure aggregation.

.. warning::

   This is hazmat: easy-to-misuse primitives. Used on their own they make it
   easy to reuse a key, forget the associated data, trust an unchecked share
   or let a quantized sum wrap. The safe API is elsewhere:
   :mod:`securefl.secagg` for masking and :mod:`securefl.reports` for signed
   records. Use this package only to build such protocols, and read
   ``docs/hazmat.md`` first.

Modules: :mod:`.keys` (X25519 + HKDF), :mod:`.aead` (AES-256-GCM),
:mod:`.sign` (Ed25519), :mod:`.shamir` (Shamir over GF(2**521 - 1)),
:mod:`.prg` (AES-CTR mask expansion), :mod:`.quantize` (fixed point in
Z_2^bits), :mod:`.dgauss` (exact discrete Gaussian and Bernoulli sampling
from AES-CTR, for DP noise and Poisson sampling), :mod:`.skellam` (exact
Poisson and Skellam noise from AES-CTR, for distributed DP), :mod:`.bls`
(BLS12-381 multi-signatures with proofs of possession, for the
neighbourhood round's consistency check). This package imports nothing from
securefl except :mod:`securefl.errors`.
"""

from __future__ import annotations

from securefl.hazmat.aead import open_, seal, share_ad
from securefl.hazmat.keys import KeyPair, derive_key, kdf_info, load_public
from securefl.hazmat.prg import add_mask, mask_vector
from securefl.hazmat.quantize import QuantizationParams, dequantize_sum, quantize
from securefl.hazmat.shamir import combine, combine_many, lagrange_coefficients, split
from securefl.hazmat.sign import SigningKey, signed_message, verify

__all__ = [
    "KeyPair",
    "QuantizationParams",
    "SigningKey",
    "add_mask",
    "combine",
    "combine_many",
    "dequantize_sum",
    "derive_key",
    "kdf_info",
    "lagrange_coefficients",
    "load_public",
    "mask_vector",
    "open_",
    "quantize",
    "seal",
    "share_ad",
    "signed_message",
    "split",
    "verify",
]
