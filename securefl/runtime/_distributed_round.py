"""A site's round under distributed DP: one Poisson batch, clipped and summed, a noise share.

With ``privacy = "distributed"`` a round is one DP-SGD step over the union of
the sites' Poisson samples, so the user's loop changes shape::

    model, optimizer, loader = site.privatize(model, optimizer, loader)
    for rnd in site.rounds(model):
        features, labels = rnd.batch()          # one Poisson sample at the federation's q
        optimizer.zero_grad()
        loss_fn(model(features), labels).backward()
        optimizer.step()                        # clips each example's gradient and sums
        rnd.submit(metrics=...)                 # rounds, adds the noise share, masks

``privatize`` wraps the model in Opacus's ``GradSampleModule`` (per-example
gradients, no noise) and the optimizer in :class:`ClipSumOptimizer`, whose
``step`` clips every example's gradient to C·(1 − 2⁻²⁰) and sums them in
float64 (the margin and the float64 sum are what the sensitivity proof of
``docs/distributed_dp.md`` asks for); it never moves the model: the server
takes the step on the sum. A second ``step`` in a round, a step outside a
round or a ``submit`` before the step raises :class:`ConfigError`, so a
local-epochs loop stops at its second batch instead of spending budget.

The privacy of a round (one subsampled Skellam release of variance μ at the
federation's q) is reserved before the round's batch is drawn and committed
before the masked input leaves, by :class:`DistributedAccount`, the same
bookkeeping as DP-SGD's with the event swapped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from securefl.aggregation.base import RoundContext, SiteAggregator
from securefl.config import DPConfig
from securefl.dp import PrivacyLedger
from securefl.dp.distributed import NoiseShare, add_noise_share, randomized_round
from securefl.dp.events import DPEvent
from securefl.errors import ConfigError, ProtocolError
from securefl.params import ParamSpec
from securefl.runtime._account import RoundAccount
from securefl.runtime._distributed import CLIP_MARGIN, DistributedPlan
from securefl.wire import Envelope

if TYPE_CHECKING:
    from securefl.runtime.site import Site

__all__ = [
    "ClipSumOptimizer",
    "DistributedAccount",
    "DistributedSite",
    "poisson_indices",
    "privatize_site",
]

log = logging.getLogger("securefl.runtime.site")

_ONE_STEP = (
    'with privacy = "distributed" a round is one DP-SGD step on one batch: take rnd.batch(), '
    "one backward and one optimizer.step(), then rnd.submit(); a local-epochs loop would "
    "spend privacy the round did not admit"
)


def poisson_indices(size: int, rate: float) -> npt.NDArray[np.int64]:
    """Each of ``size`` records independently with probability ``rate``, from os.urandom."""
    if rate >= 1.0:
        return np.arange(size, dtype=np.int64)
    words = np.frombuffer(os.urandom(8 * size), dtype="<u8")
    return np.flatnonzero(words < np.uint64(int(rate * 2.0**64))).astype(np.int64)


class DistributedAccount(RoundAccount):
    """A site's ledger and records for distributed rounds: one Skellam release per round."""

    def __init__(
        self,
        *,
        ledger: PrivacyLedger,
        dp: DPConfig,
        plan: DistributedPlan,
        dataset_size: int,
        records: Any = None,
        federation: str = "",
    ) -> None:
        # not RoundAccount.__init__: there is no DP-SGD optimizer to guard
        self.ledger, self.dp, self.plan = ledger, dp, plan
        self.local_epochs = 1
        self.dataset_size = dataset_size
        self.records, self.federation = records, federation
        self._reservation = None
        #: t − c of the round being reserved (the site's own threshold and colluders)
        self.shares = 1

    def planned_event(self) -> DPEvent:
        return self.plan.event(self.shares)

    def actual_event(self) -> DPEvent:
        """The round's release, charged in full whether or not it was sent (fail closed)."""
        return self.plan.event(self.shares)

    def expected_batch_size(self) -> int:
        return max(1, round(self.plan.sample_rate * self.dataset_size))

    def _on_reserved(self) -> None:
        return None


class DistributedSite:
    """One site's state for distributed rounds: the batch, the clipped sum, the share."""

    def __init__(
        self,
        *,
        plan: DistributedPlan,
        account: DistributedAccount,
        module: torch.nn.Module,
        spec: ParamSpec,
        dataset: Any,
        collate: Callable[[list[Any]], Any],
    ) -> None:
        self.plan, self.account, self.module, self.spec = plan, account, module, spec
        self._dataset, self._collate = dataset, collate
        self._share: NoiseShare | None = None
        self._batch: int | None = None
        self._sum: npt.NDArray[np.float64] | None = None

    def prepare(self, ctx: RoundContext) -> None:
        """Size this round's share from the site's own threshold, before the reservation."""
        share = self.plan.share(federation=ctx.federation, round_id=ctx.round, cohort=ctx.cohort)
        self._share, self._batch, self._sum = share, None, None
        self.account.shares = share.contributors

    def batch(self) -> Any:
        """This round's Poisson batch of the site's records, at the federation's rate q."""
        self._check_open()
        if self._batch is not None:
            raise ConfigError(f"rnd.batch() was already drawn this round; {_ONE_STEP}")
        size = len(self._dataset)
        chosen = poisson_indices(size, self.plan.sample_rate)
        self._batch = int(chosen.size)
        if chosen.size:
            return self._collate([self._dataset[int(i)] for i in chosen])
        return _empty_like(self._collate([self._dataset[0]]))

    def clip_and_sum(self) -> None:
        """The optimizer's step: Σ over the batch of each example's gradient clipped to C."""
        self._check_open()
        if self._sum is not None:
            raise ConfigError(f"a second optimizer step in one round; {_ONE_STEP}")
        if self._batch is None:
            raise ConfigError(f"optimizer.step() before rnd.batch(); {_ONE_STEP}")
        rows = self._per_example(self._batch)
        if rows.shape[0] == 0:
            self._sum = np.zeros(self.spec.size, dtype=np.float64)
            return
        norms = np.linalg.norm(rows, axis=1)
        bound = self.plan.clip * CLIP_MARGIN
        factors = np.minimum(1.0, bound / np.maximum(norms, np.finfo(np.float64).tiny))
        self._sum = (rows * factors[:, None]).sum(axis=0)

    def protect(self, aggregator: SiteAggregator) -> list[Envelope]:
        """Round γ·Σ, add this site's Skellam share, and mask it on the integer path."""
        self._check_open()
        if self._sum is None or self._share is None:
            raise ConfigError(f"rnd.submit() before optimizer.step(); {_ONE_STEP}")
        if not np.all(np.isfinite(self._sum)):
            raise ProtocolError("the clipped gradient sum holds NaN or infinity; nothing was sent")
        noisy = add_noise_share(randomized_round(self._sum, scale=self.plan.scale), self._share)
        submit = getattr(aggregator, "submit_integers", None)
        if submit is None:
            raise ConfigError('privacy = "distributed" needs the integer masking path')
        out: list[Envelope] = submit(noisy)
        return out

    def _check_open(self) -> None:
        if self.account.open_round is None:
            raise ConfigError(
                "a distributed DP-SGD step outside a round would spend privacy no ledger "
                "admitted; train only inside `for rnd in site.rounds(model)`"
            )

    def _per_example(self, batch: int) -> npt.NDArray[np.float64]:
        """Per-example gradients, one row each, in the federation's parameter order."""
        inner = getattr(self.module, "_module", self.module)
        params = dict(inner.named_parameters())
        columns: list[npt.NDArray[np.float64]] = []
        for name, shape in zip(self.spec.names, self.spec.shapes, strict=True):
            width = int(np.prod(shape)) if shape else 1
            p = params.get(name)
            sample = None if p is None else getattr(p, "grad_sample", None)
            if p is None or not p.requires_grad or batch == 0:
                columns.append(np.zeros((batch, width), dtype=np.float64))
                continue
            if sample is None:
                raise ConfigError(
                    f"no per-example gradient for {name!r}: call loss.backward() on the "
                    "batch of rnd.batch() before optimizer.step()"
                )
            grads = sample.detach().to(torch.float64).reshape(sample.shape[0], -1).numpy()
            if grads.shape[0] != batch:
                raise ConfigError(
                    f"the backward pass saw {grads.shape[0]} examples, the round's batch has "
                    f"{batch}; {_ONE_STEP}"
                )
            columns.append(grads)
        return np.concatenate(columns, axis=1) if columns else np.zeros((batch, 0))


class ClipSumOptimizer(torch.optim.Optimizer):
    """The user's optimizer under distributed DP: ``step`` clips and sums, moves nothing.

    The user's optimizer (and its learning rate) is not used: the server
    applies ``train.learning_rate`` to the averaged noisy gradient.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, site: DistributedSite) -> None:
        super().__init__(site.module.parameters(), dict(optimizer.defaults))
        self.original_optimizer, self._site = optimizer, site

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._site.module.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ConfigError("the distributed optimizer takes no closure")
        self._site.clip_and_sum()


def _empty_like(batch: Any) -> Any:
    """A collated batch of one example cut to zero rows (an empty Poisson sample)."""
    if isinstance(batch, torch.Tensor):
        return batch[:0]
    if isinstance(batch, Sequence) and not isinstance(batch, str):
        return type(batch)(_empty_like(b) for b in batch)  # type: ignore[call-arg]
    return batch


def privatize_distributed(
    *,
    plan: DistributedPlan,
    account: DistributedAccount,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: torch.utils.data.DataLoader[Any],
    fix_model: bool,
) -> tuple[DistributedSite, ClipSumOptimizer]:
    """Per-example gradients without noise (Opacus GradSampleModule), the one-step optimizer."""
    import warnings

    from opacus import GradSampleModule

    from securefl.dp.privatize import _HOOK_WARNING, check_model
    from securefl.runtime._site_round import model_state

    model = check_model(model, fix_model=fix_model)
    spec = ParamSpec.from_state_dict(model_state(model))
    if spec.size != plan.dimension:
        raise ConfigError(
            f"this model has {spec.size} parameters, the federation's {plan.dimension}; build "
            "it as the federation's initial model"
        )
    # installed where Opacus's hooks are, and kept, as securefl.dp.privatize does
    warnings.filterwarnings("ignore", message=_HOOK_WARNING, category=UserWarning)
    module = GradSampleModule(model, loss_reduction="mean")
    site = DistributedSite(
        plan=plan,
        account=account,
        module=module,
        spec=spec,
        dataset=loader.dataset,
        collate=loader.collate_fn,
    )
    return site, ClipSumOptimizer(optimizer, site)


def privatize_site(
    site: Site,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: torch.utils.data.DataLoader[Any],
    fix_model: bool | None,
) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.utils.data.DataLoader[Any]]:
    """:meth:`Site.privatize` under distributed DP: the account, the module, the optimizer."""
    from securefl.dp import check_delta

    plan = site.distributed
    assert plan is not None
    size = len(loader.dataset)  # type: ignore[arg-type]
    check_delta(site.dp.delta, num_examples=size, name=f"dp.delta of site {site.name!r}")
    site.noise_multiplier = plan.noise_multiplier
    account = DistributedAccount(
        ledger=site.ledger,
        dp=site.dp,
        plan=plan,
        dataset_size=size,
        records=site.records,
        federation=site.federation,
    )
    dd, private_optimizer = privatize_distributed(
        plan=plan,
        account=account,
        model=model,
        optimizer=optimizer,
        loader=loader,
        fix_model=site.fix_model if fix_model is None else fix_model,
    )
    site._account, site._dd = account, dd
    for round_id in account.settle_interrupted():
        log.warning("%s: interrupted round %d charged in full as planned", site.name, round_id)
    return dd.module, private_optimizer, loader
