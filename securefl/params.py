"""PyTorch ``state_dict`` <-> one flat float32 vector, described by a ParamSpec.

Why one flat vector: every aggregation mode (plain sum, masking over a ring,
homomorphic encryption in slot-sized chunks) works on a 1-D array, and the
strategy does vector arithmetic. The :class:`ParamSpec` travels with the
federation so a site can check that the vector it receives fits its model:
a mismatch in names, shapes or length raises instead of silently loading
garbage into the wrong layer.

Why two modules: the coordinator holds only the spec and a flat vector, and
must run without torch (a coordinator machine needs no GPU stack). So this
module is numpy-only (the spec, the hash, safetensors files); the functions
that touch torch tensors live in :mod:`securefl._torch_params` and are
loaded on first use under their usual names here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file, save_file

from securefl.errors import DataError

if TYPE_CHECKING:
    import torch

    from securefl._torch_params import (
        flatten,
        load_vector_into,
        model_vector,
        unflatten,
        unwrap,
    )

__all__ = [
    "ParamSpec",
    "flatten",
    "load_params",
    "load_vector_into",
    "model_vector",
    "params_hash",
    "save_params",
    "split_vector",
    "unflatten",
    "unwrap",
]

_TORCH_NAMES = frozenset({"flatten", "load_vector_into", "model_vector", "unflatten", "unwrap"})


def __getattr__(name: str) -> object:
    """The torch-dependent names, imported on first use (a server never asks for them)."""
    if name in _TORCH_NAMES:
        from securefl import _torch_params

        return getattr(_torch_params, name)
    raise AttributeError(f"module 'securefl.params' has no attribute {name!r}")


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
        import torch

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


def params_hash(vector: npt.NDArray[Any]) -> str:
    """Hex SHA-256 of a parameter vector's little-endian float32 bytes."""
    return hashlib.sha256(np.asarray(vector, dtype="<f4").tobytes()).hexdigest()


def split_vector(vector: npt.NDArray[Any], spec: ParamSpec) -> dict[str, npt.NDArray[Any]]:
    """Split a flat vector into named numpy arrays of the spec's shapes and dtypes.

    Refuses a vector of the wrong length and one with NaN or infinite values:
    such a model must never be written or loaded.
    """
    vec = np.asarray(vector)
    if vec.ndim != 1 or vec.shape[0] != spec.size:
        raise DataError(f"parameter vector has {vec.size} values, the model needs {spec.size}")
    if not np.all(np.isfinite(vec)):
        raise DataError("parameter vector contains NaN or infinite values")
    out: dict[str, npt.NDArray[Any]] = {}
    offset = 0
    for name, shape, dtype in zip(spec.names, spec.shapes, spec.dtypes, strict=True):
        n = int(np.prod(shape)) if shape else 1
        chunk = vec[offset : offset + n].astype(np.float32).reshape(shape)
        try:
            out[name] = chunk.astype(np.dtype(dtype))
        except TypeError:
            raise DataError(
                f"parameter {name!r} has dtype {dtype!r}, which numpy cannot hold"
            ) from None
        offset += n
    return out


def save_params(path: str | Path, vector: npt.NDArray[Any], spec: ParamSpec) -> None:
    """Write named tensors as safetensors: loading it can never execute code."""
    save_file(split_vector(vector, spec), str(path))


def load_params(path: str | Path, spec: ParamSpec) -> npt.NDArray[np.float32]:
    """Read a safetensors file written by :func:`save_params`, checking it fits ``spec``."""
    arrays = load_file(str(path))
    parts: list[npt.NDArray[np.float32]] = []
    for name, shape in zip(spec.names, spec.shapes, strict=True):
        if name not in arrays:
            raise DataError(f"model has no parameter {name!r} that the federation expects")
        array = arrays[name]
        if tuple(array.shape) != shape:
            raise DataError(f"parameter {name!r} has shape {tuple(array.shape)}, expected {shape}")
        parts.append(array.astype(np.float32).reshape(-1))
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)
