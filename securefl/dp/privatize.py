"""Opacus DP-SGD around a user's own model, optimizer and data loader.

:func:`make_private` is the one door through which a site's training becomes
differentially private. It always uses Poisson sampling (the accountants
assume it), refuses models Opacus cannot handle unless asked to fix them, and
counts the optimizer steps that really happened so the ledger records the
actual event, not the planned one.

Randomness: with ``secure_rng=True`` (the default) Poisson sampling and the
Gaussian noise come from AES-256-CTR keystreams under fresh ``os.urandom``
keys, and the noise is exact integer noise added to the clipped sum rounded
to a power-of-two grid (:mod:`securefl.dp.noise`), which closes the
floating-point attacks on Gaussian samplers (Mironov 2012; Jin et al. 2022).
This replaces Opacus's ``secure_mode``, which needs ``torchcsprng`` (no
release for torch 2.x). With ``secure_rng=False`` noise and sampling come
from torch's Mersenne Twister seeded from ``os.urandom`` (64 bits each), so a
user's ``torch.manual_seed(0)`` still cannot make them predictable, but it is
not a CSPRNG and the floating-point attacks apply. The DPEvent records which
one ran, and an auditor sees it.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from securefl.dp.events import DPEvent
from securefl.errors import ConfigError, UnsupportedModelError

__all__ = ["PrivateTraining", "check_model", "make_private", "planned_event"]

_FIX_HINT = (
    "replace BatchNorm with GroupNorm, or pass fix_model=True to let Opacus's "
    "ModuleValidator.fix swap it"
)

#: torch warns on every backward pass through a module whose inputs need no
#: gradient: Opacus's per-example hooks on the first layer always are. It
#: says nothing about the user's model, and would repeat every round (any
#: ``warnings.catch_warnings`` resets the once-per-line registry).
_HOOK_WARNING = "Full backward hook is firing when gradients are computed with respect"


def _unsupported_layers(model: nn.Module) -> dict[str, list[str]]:
    """Layer type -> the names of the layers of that type Opacus cannot train privately."""
    from opacus.utils.module_utils import trainable_modules
    from opacus.validators import ModuleValidator

    found: dict[str, list[str]] = {}
    for name, module in trainable_modules(model):
        validator = ModuleValidator.VALIDATORS.get(type(module))
        if validator is not None and validator(module):
            found.setdefault(type(module).__name__, []).append(name or "(the model itself)")
    return found


def check_model(
    model: nn.Module, *, fix_model: bool, fix_where: str = "fix_model=True"
) -> nn.Module:
    """The model, or with ``fix_model`` a fixed copy, that DP-SGD can train; else one paragraph.

    Opacus refuses some layers (BatchNorm mixes the examples of a batch, so
    one example's gradient cannot be clipped alone); its own message repeats
    a long text per layer. This says once which layers and what to do, and
    ``fix_where`` says where the user passes the fix.

    Raises:
        UnsupportedModelError: such layers and ``fix_model`` is False, or the
            fix leaves layers Opacus still refuses.
    """
    found = _unsupported_layers(model)
    if not found:
        return model
    if fix_model:
        from opacus.validators import ModuleValidator

        fixed: nn.Module = ModuleValidator.fix(model)
        left = _unsupported_layers(fixed)
        if left:
            raise UnsupportedModelError(
                f"Opacus cannot make this model private even after fixing it: {_layers(left)}"
            )
        return fixed
    batchnorm = any(kind.startswith(("BatchNorm", "SyncBatchNorm")) for kind in found)
    why = (
        "BatchNorm normalises each example with the others in its batch, so one "
        "patient's gradient cannot be clipped on its own"
        if batchnorm
        else "Opacus cannot compute their per-example gradients"
    )
    raise UnsupportedModelError(
        f"DP-SGD cannot train this model as it is: {_layers(found)} ({why}). "
        "Replace BatchNorm with GroupNorm (e.g. nn.GroupNorm(8, channels)), or pass "
        f"{fix_where} to let Opacus swap such layers for ones it supports."
    )


def _layers(found: dict[str, list[str]]) -> str:
    return "; ".join(
        f"{kind} layer{'s' if len(names) > 1 else ''} {', '.join(repr(n) for n in names)}"
        for kind, names in found.items()
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


def _urandom_generator() -> torch.Generator:
    return torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little"))


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a number > 0, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return float(value)


def _make_private_secure(
    engine: Any,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[Any],
    *,
    sigma: float,
    clip: float,
) -> tuple[nn.Module, Any, DataLoader[Any]]:
    """Opacus with our CSPRNG Poisson loader and grid-noise optimizer.

    The engine gets the already-Poisson loader (so it adds no sampler of its
    own) and computes q = 1/len(loader) and the expected batch size as it
    always does; its optimizer is then rebuilt as :class:`CsprngDPOptimizer`
    with the same settings and the engine's accountant hook.
    """
    from securefl.dp._secure_opacus import CsprngDPOptimizer, secure_poisson_loader

    poisson = secure_poisson_loader(loader)
    dp_model, opacus_optimizer, dp_loader = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=poisson,
        noise_multiplier=sigma,
        max_grad_norm=clip,
        poisson_sampling=False,
    )
    # What poisson_sampling=True would have done to the model.
    dp_model.forbid_grad_accumulation()
    dp_optimizer = CsprngDPOptimizer(
        opacus_optimizer.original_optimizer,
        noise_multiplier=sigma,
        max_grad_norm=clip,
        expected_batch_size=opacus_optimizer.expected_batch_size,
        loss_reduction=opacus_optimizer.loss_reduction,
    )
    dp_optimizer.attach_step_hook(
        engine.accountant.get_optimizer_hook_fn(sample_rate=dp_loader.sample_rate)
    )
    return dp_model, dp_optimizer, dp_loader


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
    remaining = _unsupported_layers(fixed)
    if remaining:
        raise UnsupportedModelError(
            f"Opacus cannot make this model private even after fixing it: {_layers(remaining)}"
        )
    return fixed, new_optimizer


def make_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[Any],
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    secure_rng: bool = True,
    fix_model: bool = False,
) -> PrivateTraining:
    """Wrap model, optimizer and loader in Opacus DP-SGD with Poisson sampling.

    The caller must train with the returned ``model``, ``optimizer`` and
    ``loader``: Opacus wraps all three, and with ``fix_model=True`` the model
    is a fixed *copy* and the optimizer a new one over its parameters.

    Raises:
        UnsupportedModelError: Opacus cannot compute per-sample gradients for
            the model (e.g. BatchNorm) and ``fix_model`` is False.
        ConfigError: a noise multiplier or clipping norm that is not a finite
            number > 0.
    """
    from opacus import PrivacyEngine

    sigma = _check_positive("noise_multiplier", noise_multiplier)
    clip = _check_positive("max_grad_norm", max_grad_norm)
    if not isinstance(secure_rng, bool):
        raise ConfigError(f"secure_rng must be a bool, got {secure_rng!r}")
    if not fix_model:
        check_model(model, fix_model=False)
    elif _unsupported_layers(model):
        model, optimizer = _fix_model(model, optimizer)
    if not model.training:
        raise UnsupportedModelError("the model is in eval mode; call model.train() first")
    # installed here, where Opacus's hooks are, and kept: see _HOOK_WARNING
    warnings.filterwarnings("ignore", message=_HOOK_WARNING, category=UserWarning)

    with warnings.catch_warnings():
        # Opacus warns whenever its secure_mode is off; ours replaces it, and
        # the DPEvent records which randomness ran.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant="prv", secure_mode=False)
    if secure_rng:
        dp_model, dp_optimizer, dp_loader = _make_private_secure(
            engine, model, optimizer, loader, sigma=sigma, clip=clip
        )
    else:
        # Never let the user's global torch seed decide the batches or the noise.
        loader = copy.copy(loader)
        loader.generator = _urandom_generator()
        dp_model, dp_optimizer, dp_loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=sigma,
            max_grad_norm=clip,
            poisson_sampling=True,
            noise_generator=_urandom_generator(),
        )
    counter = _StepCounter()
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
