"""The encrypted global model (CKKS), and which strategies ``he`` mode allows.

Why θ0 stays in the clear until the first update: the initial parameters are
a public random initialisation, so the server holds θ0 as plaintext and folds
it into the first encrypted update (θ1 = θ0 + lr·S/W needs only a
plaintext-ciphertext addition, no public key). Each round the server
multiplies the fresh sum S by the public scalar lr·max_weight/Σw, which costs
one CKKS level: presets with ``scalar_levels >= 1`` (``CKKS_N8192``) bring
the sum down to the last prime, where θ already lives, so θ never runs out
of levels however many rounds pass.

BFV works on integers modulo t and cannot divide by Σw, and server momentum
(m ← β·m + S/W) would spend a level every round; in both cases the server
returns the encrypted sum with Σw and the sites, which all decrypt the same
aggregate, apply the strategy to their own copy of θ (and of the momentum).
Strategies that need the plaintext aggregate at the server (adaptive
optimizers such as FedAdam or FedYogi square it) are refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from securefl.errors import ConfigError, WireError
from securefl.he._codec import decrypt_chunks, load_chunks
from securefl.he._context import PublicContext, SecretContext
from securefl.wire import array_from_wire, array_to_wire, pack, unpack

__all__ = ["SUPPORTED_STRATEGIES", "EncryptedGlobal", "check_strategy"]

#: fedavg: server-side on ciphertexts (CKKS with a scalar level) or at the sites (any preset);
#: fedavgm: momentum applied at the sites, which keep θ and m (any preset);
#: fedprox: FedAvg on the server, the proximal pull at each site (any preset).
SUPPORTED_STRATEGIES = frozenset({"fedavg", "fedavgm", "fedprox"})


def check_strategy(name: str) -> None:
    """Refuse a strategy that needs the plaintext aggregate at the server."""
    if name.lower() not in SUPPORTED_STRATEGIES:
        raise ConfigError(
            f"strategy {name!r} needs the plaintext aggregate at the server, which he mode "
            f"never reveals; use one of {sorted(SUPPORTED_STRATEGIES)} or secure='mask'"
        )


class EncryptedGlobal:
    """θ held by the server: plaintext θ0 until the first update, ciphertexts after."""

    def __init__(self, context: PublicContext | SecretContext, dimension: int) -> None:
        if context.preset.scheme != "ckks" or context.preset.scalar_levels < 1:
            raise ConfigError(
                f"preset {context.preset.name} cannot scale ciphertexts; an encrypted global "
                "model needs a CKKS preset with a scalar level (ckks-n8192)"
            )
        self._context = context
        self.dimension = dimension
        self._plain: npt.NDArray[np.float64] | None = None
        self._chunks: list[Any] | None = None

    @classmethod
    def from_plain(
        cls, context: PublicContext | SecretContext, theta0: npt.NDArray[np.floating]
    ) -> EncryptedGlobal:
        """Start from the public initial parameters θ0."""
        theta = np.asarray(theta0, dtype=np.float64)
        if theta.ndim != 1 or not np.all(np.isfinite(theta)):
            raise ConfigError("θ0 must be a finite 1-D vector")
        glob = cls(context, theta.shape[0])
        glob._plain = theta
        return glob

    @property
    def encrypted(self) -> bool:
        """False while θ is still the public θ0."""
        return self._chunks is not None

    def update(self, encrypted_sum: bytes, total_weight: float, *, lr: float = 1.0) -> None:
        """θ ← θ + lr·S/Σw on ciphertexts (S is the blob from the server half's result)."""
        if not total_weight > 0:
            raise ConfigError("total weight must be positive")
        obj = unpack(encrypted_sum)
        if not isinstance(obj, dict) or obj.get("preset") != self._context.preset.name:
            raise WireError("aggregate was made for another preset")
        if obj.get("key_id") != self._context.key_id or obj.get("dimension") != self.dimension:
            raise WireError("aggregate was made under another key or dimension")
        vectors = load_chunks(self._context, obj["chunks"], self.dimension)
        factor = lr * float(obj["weight_scale"]) / total_weight
        slots = self._context.preset.slots
        for i, vec in enumerate(vectors):
            vec.mul_(factor)  # one level, rescaled onto the last prime where θ lives
            if self._chunks is None:
                assert self._plain is not None
                vec.add_(self._plain[i * slots : (i + 1) * slots].tolist())
            else:
                self._chunks[i].add_(vec)
        if self._chunks is None:
            self._chunks = vectors
            self._plain = None

    def to_bytes(self) -> bytes:
        """Serialize for the sites (plaintext θ0 before the first update)."""
        if self._chunks is None:
            assert self._plain is not None
            return pack({"v": 1, "plain": array_to_wire(self._plain), "chunks": []})
        return pack({"v": 1, "plain": None, "chunks": [bytes(c.serialize()) for c in self._chunks]})

    @classmethod
    def from_bytes(
        cls, context: PublicContext | SecretContext, data: bytes, dimension: int
    ) -> EncryptedGlobal:
        """Load what :meth:`to_bytes` wrote."""
        obj = unpack(data)
        if not isinstance(obj, dict) or set(obj) != {"v", "plain", "chunks"} or obj["v"] != 1:
            raise WireError("not an encrypted global model")
        glob = cls(context, dimension)
        if obj["plain"] is not None:
            glob._plain = array_from_wire(obj["plain"], expected_len=dimension).astype(np.float64)
        else:
            glob._chunks = load_chunks(context, obj["chunks"], dimension)
        return glob

    def decrypt(self, secret_context: SecretContext) -> npt.NDArray[np.float64]:
        """θ in the clear, at a site."""
        if self._chunks is None:
            assert self._plain is not None
            return self._plain.copy()
        chunks = [bytes(c.serialize()) for c in self._chunks]
        values = decrypt_chunks(secret_context, chunks, self.dimension)
        return np.asarray(values[: self.dimension], dtype=np.float64)
