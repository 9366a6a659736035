"""The torch half of :mod:`securefl.params`: tensors <-> the flat vector.

Imported only by parties that hold a model (sites, ``simulate``); the names
are re-exported from :mod:`securefl.params`, which is what callers import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from securefl.errors import DataError
from securefl.params import ParamSpec

__all__ = ["flatten", "load_vector_into", "model_vector", "unflatten", "unwrap"]


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
