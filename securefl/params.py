"""PyTorch ``state_dict`` <-> one flat float32 vector, described by a ParamSpec.

Why one flat vector: every aggregation mode (plain sum, masking over a ring,
homomorphic encryption in slot-sized chunks) works on a 1-D array, and the
strategy does vector arithmetic. The :class:`ParamSpec` travels with the
federation so a site can check that the vector it receives fits its model:
a mismatch in names, shapes or length raises instead of silently loading
garbage into the wrong layer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from safetensors.numpy import load_file, save_file

from securefl.errors import DataError

__all__ = [
    "ParamSpec",
    "flatten",
    "load_params",
    "load_vector_into",
    "model_vector",
    "params_hash",
    "save_params",
    "unflatten",
    "unwrap",
]


@dataclass(frozen=True, kw_only=True)
class ParamSpec:
    """Names, shapes and dtypes of the floating-point entries of a state_dict."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]

    @property
    def size(self) -> int:
        """Number of scalars in the flat vector."""
        return sum(int(np.prod(s)) if s else 1 for s in self.shapes)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> ParamSpec:
        """Describe the floating-point tensors of ``state`` (integer buffers are skipped)."""
        items = [(k, v) for k, v in state.items() if torch.is_floating_point(v)]
        return cls(
            names=tuple(k for k, _ in items),
            shapes=tuple(tuple(v.shape) for _, v in items),
            dtypes=tuple(str(v.dtype).removeprefix("torch.") for _, v in items),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON/msgpack-safe form."""
        return {
            "names": list(self.names),
            "shapes": [list(s) for s in self.shapes],
            "dtypes": list(self.dtypes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParamSpec:
        """Inverse of :meth:`to_dict`, validating types."""
        try:
            names = tuple(str(n) for n in data["names"])
            shapes = tuple(tuple(int(d) for d in s) for s in data["shapes"])
            dtypes = tuple(str(d) for d in data["dtypes"])
        except (KeyError, TypeError, ValueError):
            raise DataError("malformed parameter spec") from None
        if not len(names) == len(shapes) == len(dtypes):
            raise DataError("parameter spec lists differ in length")
        return cls(names=names, shapes=shapes, dtypes=dtypes)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The user's module inside an Opacus ``GradSampleModule`` (or itself)."""
    inner = getattr(model, "_module", None)
    return inner if isinstance(inner, torch.nn.Module) else model


def flatten(
    state: Mapping[str, torch.Tensor], spec: ParamSpec | None = None
) -> npt.NDArray[np.float32]:
    """Concatenate the spec's tensors of ``state`` into one float32 vector."""
    spec = spec or ParamSpec.from_state_dict(state)
    parts: list[npt.NDArray[np.float32]] = []
    for name, shape in zip(spec.names, spec.shapes, strict=True):
        if name not in state:
            raise DataError(f"model has no parameter {name!r} that the federation expects")
        tensor = state[name]
        if tuple(tensor.shape) != shape:
            raise DataError(f"parameter {name!r} has shape {tuple(tensor.shape)}, expected {shape}")
        parts.append(tensor.detach().to(torch.float32).cpu().numpy().reshape(-1))
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def unflatten(vector: npt.NDArray[Any], spec: ParamSpec) -> dict[str, torch.Tensor]:
    """Split a flat vector back into named tensors of the spec's shapes and dtypes."""
    vec = np.asarray(vector)
    if vec.ndim != 1 or vec.shape[0] != spec.size:
        raise DataError(f"parameter vector has {vec.size} values, the model needs {spec.size}")
    if not np.all(np.isfinite(vec)):
        raise DataError("parameter vector contains NaN or infinite values")
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for name, shape, dtype in zip(spec.names, spec.shapes, spec.dtypes, strict=True):
        n = int(np.prod(shape)) if shape else 1
        chunk = vec[offset : offset + n].astype(np.float32).reshape(shape)
        out[name] = torch.from_numpy(chunk.copy()).to(getattr(torch, dtype))
        offset += n
    return out


def model_vector(model: torch.nn.Module, spec: ParamSpec | None = None) -> npt.NDArray[np.float32]:
    """The model's current parameters as a flat vector."""
    return flatten(unwrap(model).state_dict(), spec)


def load_vector_into(model: torch.nn.Module, vector: npt.NDArray[Any], spec: ParamSpec) -> None:
    """Load a flat vector into ``model`` in place (keeps optimizer references valid)."""
    tensors = unflatten(vector, spec)
    target = unwrap(model).state_dict()
    with torch.no_grad():
        for name, value in tensors.items():
            if name not in target:
                raise DataError(f"model has no parameter {name!r} that the federation expects")
            target[name].copy_(value)


def params_hash(vector: npt.NDArray[Any]) -> str:
    """Hex SHA-256 of a parameter vector's little-endian float32 bytes."""
    return hashlib.sha256(np.asarray(vector, dtype="<f4").tobytes()).hexdigest()


def save_params(path: str | Path, vector: npt.NDArray[Any], spec: ParamSpec) -> None:
    """Write named tensors as safetensors: loading it can never execute code."""
    arrays = {k: v.numpy() for k, v in unflatten(vector, spec).items()}
    save_file(arrays, str(path))


def load_params(path: str | Path, spec: ParamSpec) -> npt.NDArray[np.float32]:
    """Read a safetensors file written by :func:`save_params`, checking it fits ``spec``."""
    arrays = load_file(str(path))
    state = {k: torch.from_numpy(v) for k, v in arrays.items()}
    return flatten(state, spec)
