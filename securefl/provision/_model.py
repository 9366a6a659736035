"""The initial model every kit starts from, built once at provisioning.

Why here: the kits carry the model as safetensors plus its parameter spec,
so the server never needs torch. Provisioning is the one place that imports
torch (lazily, on call) to build it from the federation file's [model] table.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from securefl.config import ModelConfig
from securefl.errors import ConfigError

__all__ = ["write_initial_model"]


def _build(config: ModelConfig) -> object:
    import torch

    from securefl.simulation.trainer import default_model

    with torch.random.fork_rng():  # the seed never touches the caller's generator
        torch.manual_seed(config.seed)
        if config.factory is None:
            return default_model(config.features, config.classes)
        module_name, _, attr = config.factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"model.factory {config.factory!r} cannot be imported ({exc})"
            ) from None
        model = factory()
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model.factory {config.factory!r} must return a torch.nn.Module")
    return model


def write_initial_model(config: ModelConfig, folder: Path) -> None:
    """Write ``model.safetensors`` and ``spec.json`` for the [model] table into ``folder``.

    The default model is the one ``simulate`` trains (``simulation.trainer.
    default_model`` seeded the same way), so a deployment and a simulation
    of the same file start from the same weights.
    """
    import torch

    from securefl.params import ParamSpec, model_vector, save_params

    model = _build(config)
    assert isinstance(model, torch.nn.Module)
    spec = ParamSpec.from_state_dict(model.state_dict())
    save_params(folder / "model.safetensors", model_vector(model, spec), spec)
    (folder / "spec.json").write_text(json.dumps(spec.to_dict(), indent=2) + "\n", encoding="utf-8")
