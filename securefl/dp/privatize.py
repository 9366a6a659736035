"""Opacus DP-SGD around a user's own model, optimizer and data loader.

:func:`make_private` is the one door through which a site's training becomes
differentially private. It always uses Poisson sampling (the accountants
assume it), refuses models Opacus cannot handle unless asked to fix them, and
counts the optimizer steps that really happened so the ledger records the
actual event, not the planned one.

Randomness: Opacus's ``secure_mode`` (CSPRNG noise and sampling, plus the
floating-point attack mitigation of Holohan et al.) needs the ``torchcsprng``
package, which has no release for torch 2.x. ``secure_rng=True`` therefore
raises :class:`~securefl.errors.ConfigError` unless ``torchcsprng`` is
importable. With ``secure_rng=False`` we still seed the noise generator and
the Poisson sampler from ``os.urandom`` (64 bits each), so a user's
``torch.manual_seed(0)`` cannot make the noise or the batches predictable;
the generators themselves are torch's Mersenne Twister, not a CSPRNG, and the
floating-point mitigation is off. The DPEvent records ``secure_rng=False`` so
an auditor sees which one ran.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from securefl.dp.events import DPEvent
from securefl.errors import ConfigError, UnsupportedModelError

__all__ = ["PrivateTraining", "make_private", "planned_event", "secure_rng_available"]

_FIX_HINT = (
    "replace BatchNorm with GroupNorm, or pass fix_model=True to let Opacus's "
    "ModuleValidator.fix swap it"
)


@dataclass
class _StepCounter:
    count: int = 0

    def __call__(self, *_: Any) -> None:
        self.count += 1


@dataclass
class PrivateTraining:
    """What :func:`make_private` returns. Use *these* model, optimizer and loader.

    ``sample_rate`` is the Poisson rate q = 1 / len(original loader), which is
    what the accountants are charged with.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: DataLoader[Any]
    engine: Any
    sample_rate: float
    noise_multiplier: float
    max_grad_norm: float
    secure_rng: bool
    _counter: _StepCounter = field(default_factory=_StepCounter, repr=False)

    def steps_taken(self) -> int:
        """Noisy optimizer steps since creation or the last :meth:`reset_steps`."""
        return self._counter.count

    def reset_steps(self) -> None:
        """Start counting a new round."""
        self._counter.count = 0

    def actual_event(self) -> DPEvent:
        """The DPEvent for the steps taken so far, to hand to ``PrivacyLedger.commit``.

        Raises:
            ConfigError: no step was taken (there is nothing to record).
        """
        return DPEvent(
            noise_multiplier=self.noise_multiplier,
            sample_rate=self.sample_rate,
            steps=self.steps_taken(),
            max_grad_norm=self.max_grad_norm,
            secure_rng=self.secure_rng,
        )


def secure_rng_available() -> bool:
    """Whether Opacus's ``secure_mode`` can run here (it needs ``torchcsprng``)."""
    return importlib.util.find_spec("torchcsprng") is not None


def _urandom_generator() -> torch.Generator:
    return torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little"))


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def _fix_model(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Apply ModuleValidator.fix and point a fresh optimizer at the new parameters.

    The fixed model is a copy with new Parameter objects, so the old optimizer
    would silently train nothing. Parameters are matched by name; the new
    optimizer keeps every param-group hyper-parameter but starts with empty
    state (momentum buffers are not carried over).
    """
    from opacus.validators import ModuleValidator

    fixed = ModuleValidator.fix(model)
    old_names = {id(p): name for name, p in model.named_parameters()}
    new_params = dict(fixed.named_parameters())
    groups: list[dict[str, Any]] = []
    for group in optimizer.param_groups:
        params = []
        for p in group["params"]:
            name = old_names.get(id(p))
            if name is None or name not in new_params:
                raise UnsupportedModelError(
                    f"after ModuleValidator.fix, optimizer parameter {name!r} has no "
                    f"counterpart in the fixed model; {_FIX_HINT} by hand"
                )
            params.append(new_params[name])
        groups.append({**group, "params": params})
    new_optimizer = type(optimizer)(groups, **optimizer.defaults)
    remaining = ModuleValidator.validate(fixed, strict=False)
    if remaining:
        raise UnsupportedModelError(
            f"Opacus cannot make this model private even after fixing: {remaining}"
        )
    return fixed, new_optimizer


def make_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[Any],
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    secure_rng: bool = False,
    fix_model: bool = False,
) -> PrivateTraining:
    """Wrap model, optimizer and loader in Opacus DP-SGD with Poisson sampling.

    The caller must train with the returned ``model``, ``optimizer`` and
    ``loader``: Opacus wraps all three, and with ``fix_model=True`` the model
    is a fixed *copy* and the optimizer a new one over its parameters.

    Raises:
        UnsupportedModelError: Opacus cannot compute per-sample gradients for
            the model (e.g. BatchNorm) and ``fix_model`` is False.
        ConfigError: a non-positive noise multiplier or clipping norm, or
            ``secure_rng=True`` where ``torchcsprng`` is not installed.
    """
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    sigma = _check_positive("noise_multiplier", noise_multiplier)
    clip = _check_positive("max_grad_norm", max_grad_norm)
    if secure_rng and not secure_rng_available():
        raise ConfigError(
            "secure_rng=True needs Opacus's secure_mode, which needs the torchcsprng "
            "package; it is not installed (and has no release for torch 2.x). Use "
            "secure_rng=False (noise and sampling seeded from os.urandom, recorded "
            "as secure_rng=False in the privacy ledger) or install a torchcsprng "
            "build matching this torch."
        )
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        if not fix_model:
            raise UnsupportedModelError(
                f"Opacus cannot make this model private: {errors}. {_FIX_HINT}."
            )
        model, optimizer = _fix_model(model, optimizer)

    with warnings.catch_warnings():
        # Opacus warns whenever secure_mode is off; the DPEvent records it instead.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant="prv", secure_mode=secure_rng)
    extra: dict[str, Any] = {}
    if not secure_rng:
        # Never let the user's global torch seed decide the batches or the noise.
        loader = copy.copy(loader)
        loader.generator = _urandom_generator()
        extra["noise_generator"] = _urandom_generator()
    counter = _StepCounter()
    dp_model, dp_optimizer, dp_loader = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=sigma,
        max_grad_norm=clip,
        poisson_sampling=True,
        **extra,
    )
    # Counted in Opacus's own step hook, which runs only after per-sample
    # clipping and noise, exactly when its accountant is charged; a step on
    # the unwrapped optimizer (no clipping, no noise) is never counted as private.
    charge = dp_optimizer.step_hook

    def count_private_step(opt: Any) -> None:
        counter()
        if charge is not None:
            charge(opt)

    dp_optimizer.attach_step_hook(count_private_step)
    return PrivateTraining(
        model=dp_model,
        optimizer=dp_optimizer,
        loader=dp_loader,
        engine=engine,
        sample_rate=float(getattr(dp_loader, "sample_rate", 1.0 / len(loader))),
        noise_multiplier=sigma,
        max_grad_norm=clip,
        secure_rng=secure_rng,
        _counter=counter,
    )


def planned_event(
    *,
    noise_multiplier: float,
    sample_rate: float,
    epochs: int,
    max_grad_norm: float,
    secure_rng: bool,
) -> DPEvent:
    """The DPEvent to reserve before a round of ``epochs`` epochs.

    ``steps = epochs * round(1 / sample_rate)``: with Poisson sampling one
    "epoch" is 1/q steps in expectation, which is how Opacus's loader counts it.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be an integer >= 1, got {epochs!r}")
    q = _check_positive("sample_rate", sample_rate)
    return DPEvent(
        noise_multiplier=noise_multiplier,
        sample_rate=q,
        steps=epochs * max(1, round(1.0 / q)),
        max_grad_norm=max_grad_norm,
        secure_rng=secure_rng,
    )
