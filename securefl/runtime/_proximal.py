"""FedProx's proximal pull, applied after each private step (post-processing, no privacy cost).

Why after the step: the pull toward the round's global weights uses no data,
so applying it to the already-noised parameters keeps the DP guarantee of the
step; adding it to the loss would put it inside the clipped gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from securefl.params import ParamSpec, unflatten, unwrap

__all__ = ["ProximalPull"]


class ProximalPull:
    """Installs ``p ← p − min(lr·μ, 1)·(p − anchor)`` as a step post-hook; one round at a time."""

    def __init__(self) -> None:
        self._handle: Any = None

    def install(
        self,
        optimizer: torch.optim.Optimizer,
        model: torch.nn.Module,
        anchor: npt.NDArray[np.float32],
        spec: ParamSpec,
        mu: float,
    ) -> None:
        self.remove()
        if mu <= 0:
            return
        inner = getattr(optimizer, "original_optimizer", optimizer)
        anchors = unflatten(anchor, spec)
        pairs = [
            (p, anchors[n].to(p.dtype)) for n, p in unwrap(model).named_parameters() if n in anchors
        ]

        def pull(opt: torch.optim.Optimizer, *_: Any) -> None:
            lr = float(opt.param_groups[0]["lr"])  # read each step: schedulers change it
            step = min(lr * mu, 1.0)  # never overshoot the anchor
            with torch.no_grad():
                for p, a in pairs:
                    p.sub_(step * (p - a))

        self._handle = inner.register_step_post_hook(pull)

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
