"""The Site API: what a hospital's own training loop touches.

A user keeps their loop and changes a handful of lines::

    site = fed.sites["site-a"]     # a securefl.simulation.LocalFederation; later, a kit
    model, optimizer, loader = site.privatize(model, optimizer, loader)
    for rnd in site.rounds(model):                       # global weights loaded
        train_one_epoch(model, optimizer, loader)        # the user's own code
        rnd.submit(num_examples=len(loader.dataset), metrics=evaluate(model))

Why the ledger check sits in ``rounds``: the site must refuse *before* any
training starts if the round could pass its budget, and must keep refusing
after a restart. The reservation is written to disk first, so a crash in the
middle of training still counts as spent (fail closed). Everything that can
refuse a round runs before that reservation: the server's settings against
the site's policy (``_policy``), the model's shape and values, and building
the mode's site half; so a cheating server costs the site no privacy. The
round's privacy itself (reserve, step limit, charge, signed record) is kept
by ``_account``; the checks of what the server sent, and the user's
:class:`Round` handle, by ``_site_round``. The protocol is the sans-IO
:class:`~securefl.runtime.site_driver.SiteDriver` (as the server's is
:class:`~securefl.runtime.server.ServerDriver`); ``_site_io`` sends and
receives for it and reconnects after a transport error, so ``rounds`` is a
thin loop that joins the three.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from securefl.aggregation.base import AggregationMode, SiteAggregator
from securefl.config import DPConfig, FederationConfig, RoundConfig, TrainConfig
from securefl.dp import PrivacyLedger, calibrate_noise, check_delta, make_private
from securefl.dp.calibration import site_calibration_request
from securefl.dp.privatize import PrivateTraining
from securefl.errors import BudgetExhaustedError, ConfigError, ProtocolError
from securefl.params import ParamSpec, load_vector_into, model_vector, params_hash
from securefl.runtime import messages as m
from securefl.runtime._account import RoundAccount
from securefl.runtime._deployed import deployed_site_arguments
from securefl.runtime._policy import SitePolicy
from securefl.runtime._proximal import ProximalPull
from securefl.runtime._site_io import SiteLink, silence_allowance
from securefl.runtime._site_round import (
    Round,
    check_round_start,
    model_state,
)
from securefl.runtime.global_model import ModelDecoder, decode_plain_model
from securefl.runtime.keys import PreRoundSiteKeys
from securefl.runtime.site_driver import SiteDriver
from securefl.transport.base import Transport
from securefl.transport.https_client import RetryPolicy
from securefl.wire import Envelope

if TYPE_CHECKING:
    from securefl.hazmat.sign import SigningKey
    from securefl.modes import SiteHalf
    from securefl.runtime._distributed import DistributedPlan
    from securefl.runtime._distributed_round import DistributedSite

__all__ = ["ModelDecoder", "PreRoundSiteKeys", "Round", "Site"]

log = logging.getLogger(__name__)


class Site:
    """One hospital in a federation: DP-SGD, budget ledger, protected submission.

    ``roster``: the names of the federation's sites, when known; a round whose
    cohort lists anyone else is refused before any privacy is spent.
    ``mode`` may be ``None`` only with ``keys``: the mode's half then comes
    from the key step before the first round (``he``).
    """

    def __init__(
        self,
        *,
        name: str,
        federation: str,
        transport: Transport,
        mode: AggregationMode | None,
        dp: DPConfig,
        train: TrainConfig,
        rounds: RoundConfig,
        state_dir: str | Path,
        record_writer: Any = None,
        decode_model: ModelDecoder = decode_plain_model,
        roster: Collection[str] | None = None,
        keys: PreRoundSiteKeys | None = None,
        fix_model: bool = False,
        reconnect: RetryPolicy | None = None,
        distributed: DistributedPlan | None = None,
    ) -> None:
        if mode is None and keys is None:
            raise ConfigError("a site without a mode needs the mode's key step")
        self.name = name
        self.keys = keys
        #: the federation's choice: its initial model was fixed for Opacus, so fix this one too
        self.fix_model = fix_model
        self.federation = federation
        self.transport = transport
        #: how long to keep reconnecting to an unreachable server (backoff with jitter)
        self.reconnect = reconnect or RetryPolicy()
        self._driver = SiteDriver(
            name=name, federation=federation, mode=mode, keys=keys, decode_model=decode_model
        )
        self._link = SiteLink(
            transport,
            self._driver,
            reconnect=self.reconnect,
            timeout=silence_allowance(rounds.stage_timeout_seconds),
        )
        self.dp = dp
        self.train = train
        self.round_config = rounds
        self.roster = frozenset(roster) if roster is not None else None
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = PrivacyLedger(
            self.state_dir / "ledger.sqlite",
            site=name,
            epsilon_budget=dp.epsilon,
            delta=dp.delta,
            accountant=dp.accountant,
        )
        self.records = record_writer
        self.private: PrivateTraining | None = None
        self.noise_multiplier: float | None = None
        self.final_params: npt.NDArray[np.float32] | None = None
        self.finish_reason = ""
        self.history: list[dict[str, Any]] = []
        self._spec: ParamSpec | None = None
        self._aggregator: SiteAggregator | None = None
        self._account: RoundAccount | None = None
        self._proximal = ProximalPull()
        self._round_max_weight = 0.0
        self._model: torch.nn.Module | None = None
        #: privacy = "distributed": the federation's public plan, and this site's round state
        self.distributed = distributed
        self._dd: DistributedSite | None = None

    @classmethod
    def for_federation(
        cls,
        *,
        name: str,
        config: FederationConfig,
        identity_keys: Mapping[str, bytes],
        signing_key: SigningKey,
        state_dir: str | Path,
        transport: Transport,
        half: SiteHalf | None = None,
        keys: PreRoundSiteKeys | None = None,
        reconnect: RetryPolicy | None = None,
        distributed: DistributedPlan | None = None,
    ) -> Site:
        """A site of a deployed federation, from its own configuration and keys.

        ``identity_keys`` is the pinned roster (site names to Ed25519 keys,
        the server's may be listed too); ``half`` is this site's mode half
        from :func:`securefl.modes.site_half`, or ``None`` with ``keys`` (he:
        the half arrives with the keymaker's secret context). Signed privacy
        records go to ``state_dir/records/NAME.jsonl`` for ``securefl audit``.
        ``reconnect``: how long to keep reconnecting after a transport error.
        ``distributed``: the public plan of ``privacy = "distributed"``, which
        the site derives from its own kit (``half`` is then the integer path's).
        """
        return cls(
            transport=transport,
            keys=keys,
            reconnect=reconnect,
            distributed=distributed,
            **deployed_site_arguments(name, config, identity_keys, signing_key, state_dir, half),
        )

    @classmethod
    def from_kit(cls, path: str | Path, **overrides: Any) -> Site:
        """The site whose provisioned kit is at ``path`` (``securefl client`` runs this).

        Overrides (``server_url``, ``state_dir``, ``retry``, ``transport``):
        :func:`securefl.deploy.site.site_from_kit`.
        """
        from securefl.deploy.site import site_from_kit

        return site_from_kit(path, **overrides)

    # -- privatize ---------------------------------------------------------------

    def privatize(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loader: torch.utils.data.DataLoader[Any],
        *,
        fix_model: bool | None = None,
    ) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.utils.data.DataLoader[Any]]:
        """Wrap the user's objects for DP-SGD with Poisson sampling.

        The noise multiplier is calibrated so that ``max_rounds`` rounds of
        ``local_epochs`` epochs stay within the site's (ε, δ) budget. The
        returned optimizer refuses a noisy step outside a round, or beyond the
        steps the round planned, before it is taken. ``fix_model`` (default:
        the federation's choice) swaps layers Opacus refuses, as the
        federation's initial model was, so the two keep one parameter spec.
        """
        if self.distributed is not None:  # one step a round, per-example clipping without noise
            from securefl.runtime._distributed_round import privatize_site

            return privatize_site(self, model, optimizer, loader, fix_model)
        batches = len(loader)
        if batches < 1:
            raise ConfigError("the data loader is empty")
        dataset_size = len(loader.dataset)  # type: ignore[arg-type]
        check_delta(
            self.dp.delta, num_examples=dataset_size, name=f"dp.delta of site {self.name!r}"
        )
        sample_rate, steps = site_calibration_request(
            batches, rounds=self.round_config.max_rounds, epochs=self.train.local_epochs
        )
        sigma = self.dp.noise_multiplier or calibrate_noise(
            target_epsilon=self.dp.epsilon,
            delta=self.dp.delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=self.dp.accountant,
        )
        self.noise_multiplier = sigma
        self.private = make_private(
            model,
            optimizer,
            loader,
            noise_multiplier=sigma,
            max_grad_norm=self.dp.max_grad_norm,
            secure_rng=self.dp.secure_rng,
            fix_model=self.fix_model if fix_model is None else fix_model,
        )
        self._account = RoundAccount(
            ledger=self.ledger,
            dp=self.dp,
            local_epochs=self.train.local_epochs,
            private=self.private,
            dataset_size=dataset_size,
            records=self.records,
            federation=self.federation,
        )
        for round_id in self._account.settle_interrupted():
            log.warning(
                "%s: round %d was interrupted (the site stopped inside it); charged in full "
                "as planned and recorded",
                self.name,
                round_id,
            )
        return self.private.model, self.private.optimizer, self.private.loader

    # -- rounds -------------------------------------------------------------------

    def rounds(self, model: torch.nn.Module) -> Iterator[Round]:
        """Yield each round the server opens, with the global weights loaded into ``model``.

        Raises :class:`BudgetExhaustedError` (after telling the server it
        leaves) when a round would pass this site's budget, and
        :class:`ProtocolError` or :class:`ConfigError` when the server's
        settings break this site's policy; both before any training. A
        transport error is not the end: the site reconnects with backoff
        (``reconnect``), leaves the round it was in and takes the next one;
        :class:`TransportError` is raised once the server stays unreachable.
        """
        if self._account is None:
            raise ConfigError("call site.privatize(model, optimizer, loader) before site.rounds()")
        self._link.send_all(self._driver.hello())
        finished = False
        try:
            while True:
                env = self._link.next()
                out, event = self._driver.handle(env)
                self._link.send_all(out)
                if event is None:
                    continue
                if event.kind == "finish":
                    self._on_finish(model, m.decode(env.payload, m.Finish))
                    finished = True
                    return
                if event.kind == "round_end":
                    end = m.decode(env.payload, m.RoundEnd)
                    if end.status == "abandoned":
                        log.warning("%s: round %d abandoned: %s", self.name, env.round, end.reason)
                    continue
                rnd = self._begin(model, env)
                if rnd is None:  # the round start of a round this site already took
                    continue
                yield rnd
                if not rnd.submitted:
                    raise ProtocolError(f"round {rnd.number} ended without submit()")
        except BudgetExhaustedError as exc:
            # noise is calibrated for the planned rounds: a round a crash charged in full
            # can leave too little for the last one. One line, then a clean goodbye.
            log.error("%s: leaving the federation: %s", self.name, exc)
            self.leave(f"privacy budget exhausted: {exc}")
            finished = True
            raise
        finally:
            self._proximal.remove()
            if self._account is not None and self._account.open_round is not None:
                # the loop stopped inside a round: charge and record what ran
                self._account.charge_refused()
            if not finished:  # an error, a refusal or a `break` in the user's loop
                self.leave("site stopped")

    def leave(self, reason: str) -> None:
        """Tell the server this site stops taking part (best effort)."""
        self._link.leave(reason)

    @property
    def mode(self) -> AggregationMode | None:
        """The mode's site half (``None`` in ``he`` until the keys arrived)."""
        return self._driver.mode

    @property
    def decode_model(self) -> ModelDecoder:
        """How this site reads the server's model bytes."""
        return self._driver.decode_model

    def _begin(self, model: torch.nn.Module, env: Envelope) -> Round | None:
        """Check everything the server sent, then (and only then) reserve the round's privacy.

        ``None``: the very round start of a round this site already took part
        in (same run, round and model, every check passed), delivered again
        to a restarted process; dropped, as the driver drops that round's
        stage messages. Any other round start at or below the last round is
        refused.
        """
        assert self._account is not None
        if self.mode is None:  # he: the keys are delivered before any round start
            raise ProtocolError(f"round {env.round} started before this site had its keys")
        run = m.decode(env.payload, m.RoundStart).run
        checked = check_round_start(
            env,
            model,
            policy=SitePolicy(
                site=self.name,
                min_sites=self.round_config.min_sites,
                max_weight=self.round_config.max_weight,
                local_epochs=self.train.local_epochs,
                dataset_size=self._account.dataset_size,
                roster=self.roster,
                distributed=None if self.distributed is None else self.distributed.announced(),
            ),
            decode_model=self.decode_model,
            federation=self.federation,
        )
        start, settings = checked.start, checked.settings
        spec, params = checked.spec, checked.params
        if self._account.took_part(env.round, run, params_hash(params)):
            log.debug(
                "%s: dropped the round start of round %d, already taken", self.name, env.round
            )
            return None
        self._account.check_round_id(env.round, run)
        aggregator = self.mode.site(checked.context, self.name)
        if self._dd is not None:  # the noise share from this site's own threshold
            self._dd.prepare(checked.context)
        # every check passed: only now is privacy reserved and training allowed
        self._account.reserve(env.round, params_hash(params), start.run)
        self._driver.accept(env.round, aggregator)
        self._spec, self._aggregator, self._model = spec, aggregator, model
        self._round_max_weight = start.max_weight
        load_vector_into(model, params, spec)
        if self.private is not None:
            self._proximal.install(
                self.private.optimizer, model, params, spec, settings.proximal_mu
            )
        return Round(
            number=env.round,
            cohort=start.cohort,
            config=start.config,
            global_params=params,
            _site=self,
        )

    def _submit(self, rnd: Round, num_examples: int, metrics: dict[str, float]) -> None:
        assert self._account is not None and self._spec is not None and self._aggregator
        assert self._model is not None
        self._proximal.remove()
        if self._account.open_round != rnd.number:
            raise ProtocolError(f"round {rnd.number} is closed; nothing was sent")
        # every check that could refuse the update runs before privacy is committed; a
        # refusal still commits the steps that ran, with their signed record (fail closed
        # but recorded: the audit must see every round the ledger charges)
        try:
            outgoing = self._protect(rnd, num_examples)  # held until charged
        except Exception:
            self._account.charge_refused()
            self._driver.abandon()
            raise
        try:
            rnd.epsilon, actual = self._account.charge()
        except Exception:
            self._driver.abandon()
            raise
        report = m.Report(metrics=metrics).to_bytes()
        self._link.send_all(self._driver.submitted(report, outgoing))
        self.history.append(
            {"round": rnd.number, "epsilon": rnd.epsilon, "steps": actual.steps, **metrics}
        )

    def _protect(self, rnd: Round, num_examples: int) -> list[Envelope]:
        """Check the update and protect it for the mode; raises if it must not leave."""
        assert self._spec is not None and self._aggregator and self._model is not None
        if self._dd is not None:
            return self._dd.protect(self._aggregator)
        delta = (model_vector(self._model, self._spec) - rnd.global_params).astype(np.float32)
        if not np.all(np.isfinite(delta)):
            raise ProtocolError("the update contains NaN or infinite values; nothing was sent")
        if num_examples > self._round_max_weight:
            raise ConfigError(
                f"num_examples={num_examples} exceeds the federation's maximum weight "
                f"{self._round_max_weight:g}; nothing was sent"
            )
        return self._aggregator.submit(delta, float(num_examples))

    def _on_finish(self, model: torch.nn.Module, finish: m.Finish) -> None:
        if self._spec is None:
            self._spec = ParamSpec.from_state_dict(model_state(model))
        self.final_params = self.decode_model(finish.model, self._spec.size)
        load_vector_into(model, self.final_params, self._spec)
        self.finish_reason = finish.reason
