"""What a site takes from the server before it spends any privacy on a round.

:class:`~securefl.runtime.site.Site` reserves a round's privacy only after
everything the server sent has been checked. Those checks live here, apart
from the ledger, the optimizer and the mode's site half, so that it is plain
from the imports alone that a refused round start cannot cost the site
anything: the envelope filter (only the server speaks to a site), the round
start held against the site's policy, the federation's parameter spec held
against the site's own model, the global model's values, and the digest every
site of the round must agree on. :class:`Round`, the handle the user's loop
gets once they pass, lives here too; ``securefl.runtime.site`` re-exports it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from securefl.aggregation.base import RoundContext
from securefl.errors import ConfigError, ProtocolError, TransportError
from securefl.params import ParamSpec
from securefl.runtime import messages as m
from securefl.runtime._policy import RoundSettings, SitePolicy, check_round
from securefl.runtime.global_model import ModelDecoder
from securefl.transport.base import Transport
from securefl.wire import SERVER, Envelope

if TYPE_CHECKING:
    from securefl.runtime.site import Site

__all__ = [
    "CheckedStart",
    "Round",
    "check_round_start",
    "model_state",
    "receive_from_server",
    "round_digest",
]

#: the site's messages, under the name operators know them by
log = logging.getLogger("securefl.runtime.site")


@dataclass(kw_only=True)
class Round:
    """One round as the user's loop sees it. Call :meth:`submit` exactly once."""

    number: int
    cohort: tuple[str, ...]
    config: dict[str, Any]
    global_params: npt.NDArray[np.float32]
    _site: Site = field(repr=False)
    submitted: bool = False
    epsilon: float | None = None

    def submit(
        self, *, num_examples: int | None = None, metrics: Mapping[str, float] | None = None
    ) -> None:
        """Record the privacy spent, then send the protected update to the server.

        ``num_examples`` (the update's weight) is required with local DP-SGD;
        with ``privacy = "distributed"`` it is not sent (batch sizes stay
        private) and the clipped sum of the round's :meth:`batch` is submitted.
        """
        if self.submitted:
            raise ProtocolError(f"round {self.number} was already submitted")
        distributed = self._site.distributed is not None
        if num_examples is None and not distributed:
            raise ConfigError("num_examples is required with local DP-SGD")
        if num_examples is not None and num_examples < 1:
            raise ConfigError("num_examples must be at least 1")
        self._site._submit(self, num_examples or 1, dict(metrics or {}))
        self.submitted = True

    def batch(self) -> Any:
        """This round's one Poisson batch of the site's records (``privacy = "distributed"``)."""
        dd = self._site._dd
        if dd is None:
            raise ConfigError(
                'rnd.batch() is for privacy = "distributed"; with local DP-SGD train on the '
                "loader site.privatize returned"
            )
        return dd.batch()


@dataclass(frozen=True, kw_only=True)
class CheckedStart:
    """A round start that passed every check: what the site needs to reserve and train."""

    start: m.RoundStart
    settings: RoundSettings
    spec: ParamSpec
    params: npt.NDArray[np.float32]
    context: RoundContext


def check_round_start(
    env: Envelope,
    model: torch.nn.Module,
    *,
    policy: SitePolicy,
    decode_model: ModelDecoder,
    federation: str,
) -> CheckedStart:
    """Decode the round start in ``env`` and check it, raising before anything is spent.

    Raises :class:`ProtocolError` or :class:`ConfigError` when the server's
    settings break ``policy``, when its parameter spec is not ``model``'s, or
    when its global model holds NaN or infinite values.
    """
    start: m.RoundStart = m.decode(env.payload, m.RoundStart)
    settings = check_round(start, policy)
    spec = ParamSpec.from_dict(start.spec)
    own = ParamSpec.from_state_dict(model_state(model))
    if spec != own:
        raise ConfigError(
            "this site's model does not match the federation's parameter spec "
            f"({_spec_difference(spec, own)}); build it as the federation's initial model"
        )
    params = decode_model(start.model, spec.size)
    if not np.all(np.isfinite(params)):
        raise ProtocolError("the server sent a global model with NaN or infinite values")
    ctx = RoundContext(
        federation=federation,
        round=env.round,
        cohort=start.cohort,
        dimension=spec.size,
        max_weight=start.max_weight,
        min_sites=start.min_sites,
        round_digest=round_digest(env.payload, start, decode_model),
        run=start.run,
    )
    return CheckedStart(start=start, settings=settings, spec=spec, params=params, context=ctx)


def receive_from_server(
    transport: Transport, *, site: str, federation: str, timeout: float
) -> Envelope:
    """The next envelope the server sent to ``site``; anything else is dropped unread."""
    while True:
        env = transport.receive(timeout=timeout)
        if env is None:
            raise TransportError(f"{site}: no word from the server in {timeout:.0f} s")
        if env.sender != SERVER or env.receiver != site:
            # only the server speaks to a site; anything else is dropped unread
            log.warning("%s: dropped a message from %r", site, env.sender)
            continue
        if env.federation != federation:
            raise ProtocolError(f"message for another federation: {env.federation!r}")
        return env


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state of the user's model, seen through Opacus's wrapper if it has one."""
    inner = getattr(model, "_module", model)
    return dict(inner.state_dict())


def _spec_difference(federation: ParamSpec, own: ParamSpec) -> str:
    """The first entry where the two specs part, in words."""
    theirs = dict(zip(federation.names, federation.shapes, strict=True))
    mine = dict(zip(own.names, own.shapes, strict=True))
    for name in federation.names:
        if name not in mine:
            return f"this model has no {name!r}"
        if mine[name] != theirs[name]:
            return f"{name!r} is {list(mine[name])} here, {list(theirs[name])} in the federation"
    extra = [n for n in own.names if n not in theirs]
    return f"this model has {extra[0]!r}, the federation's has not" if extra else "dtypes differ"


def round_digest(payload: bytes, start: m.RoundStart, decoder: ModelDecoder) -> bytes:
    """SHA-256 of the round start as every site of the round must have seen it.

    A decoder that receives the model incrementally (he mode) gets different
    bytes at each site; the model then enters the digest as the head of the
    decoder's hash chain over the whole history, which is the same at every
    site that was given the same history.
    """
    history = getattr(decoder, "history_digest", None)
    if history is None:
        return hashlib.sha256(payload).digest()
    return hashlib.sha256(dataclasses.replace(start, model=history()).to_bytes()).digest()
