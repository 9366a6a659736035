"""An in-process federation: a server and several Sites over the memory transport.

This is what lets a user try their own training loop against a real
federation (same driver, same Site API, same aggregators) before any
network or certificate exists; ``securefl simulate`` is built on it.

Errors surface where the user can act on them: a model DP-SGD cannot train
is refused when the federation is made (once, not once per site), and an
unexpected error at any site stops the run and is raised by :meth:`run`.
Only the endings a federation expects (a site's budget runs out, a rehearsed
dropout) are reported in what :meth:`run` returns.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from securefl._deploy_config import DEFAULT_HE_PRESET, default_mask
from securefl.aggregation.base import AggregationMode
from securefl.config import (
    DistributedConfig,
    DPConfig,
    FederationConfig,
    HEConfig,
    RoundConfig,
    StrategyConfig,
    TrainConfig,
    check_site_names,
)
from securefl.dp.privatize import check_model
from securefl.errors import BudgetExhaustedError, ConfigError, TransportError
from securefl.hazmat.sign import SigningKey
from securefl.params import ParamSpec, model_vector
from securefl.reports import RecordWriter, Roster
from securefl.runtime._distributed import DistributedPlan, DistributedStep
from securefl.runtime.loop import run_server
from securefl.runtime.server import RoundSummary, ServerDriver
from securefl.runtime.site import ModelDecoder, Site
from securefl.simulation.modes import SiteVanished, make_setup
from securefl.simulation.run_folder import KEYS_DIR, identity_keys, private_dir
from securefl.strategy.fedavg import make_strategy
from securefl.transport.memory import MemoryHub
from securefl.wire import SERVER

if TYPE_CHECKING:
    from securefl.secagg import MaskConfig

__all__ = ["FederationRun", "LocalFederation"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FederationRun:
    """What :meth:`LocalFederation.run` returns.

    ``endings`` maps each site that stopped before the run did, for a reason
    a federation expects (its budget ran out, a rehearsed dropout), to that
    reason; any other site error is raised by ``run`` instead.
    """

    driver: ServerDriver
    endings: Mapping[str, str]

    @property
    def history(self) -> list[RoundSummary]:
        """One summary per round the server opened."""
        return self.driver.history

    @property
    def completed_rounds(self) -> int:
        """Rounds whose aggregate reached the model."""
        return self.driver.completed_rounds

    @property
    def finish_reason(self) -> str:
        """Why training stopped."""
        return self.driver.finish_reason

    @property
    def halted(self) -> str:
        """Why the run ended before its plan ("" if it did not)."""
        return self.driver.halted


class LocalFederation:
    """A whole federation in this process; each site's loop runs in a thread.

    Example::

        fed = LocalFederation(site_names=["a", "b", "c"], initial_model=model, ...)
        run = fed.run(lambda site: my_training(site))   # my_training uses the Site API

    ``fix_model=True`` lets Opacus swap the layers DP-SGD cannot train
    (BatchNorm becomes GroupNorm) in ``initial_model``, once, here; every
    site's ``privatize`` then applies the same fix, so the parameter specs
    agree. Without ``workdir`` the records and ledgers go to a temporary
    folder, removed by :meth:`close` or when the federation is garbage
    collected; pass ``workdir`` to keep them: the server then also keeps its
    state there (journal, checkpoints; :class:`securefl.runtime.ServerState`),
    so a federation built again on the same ``workdir`` continues after its
    last completed round. ``mask`` (the federation
    file's [mask] settings; default :func:`securefl.modes.mask_config`),
    ``he_preset`` and ``he_keymaker`` reach :mod:`securefl.modes` as a
    deployment's file does.
    """

    def __init__(
        self,
        *,
        site_names: Sequence[str],
        initial_model: torch.nn.Module,
        dp: DPConfig,
        train: TrainConfig,
        rounds: RoundConfig,
        strategy: StrategyConfig,
        max_weight: float,
        federation: str = "securefl-sim",
        secure: str = "mask",
        workdir: Path | None = None,
        dropouts: Mapping[str, str] | None = None,
        he_preset: str | None = None,
        he_keymaker: str | None = None,
        mask: MaskConfig | None = None,
        fix_model: bool = False,
        privacy: str = "local",
        distributed: DistributedConfig | None = None,
    ) -> None:
        site_names = check_site_names(site_names, where="site_names")
        if len(site_names) < rounds.min_sites:
            raise ConfigError(
                f"site_names: {len(site_names)} sites, but rounds.min_sites is "
                f"{rounds.min_sites}; add sites or lower rounds.min_sites"
            )
        initial_model = check_model(
            initial_model, fix_model=fix_model, fix_where="fix_model=True to LocalFederation"
        )
        self.initial_model = initial_model
        self.fix_model = fix_model
        self.federation = federation
        self.secure = secure
        self.dp, self.train, self.rounds = dp, train, rounds
        self._remove_workdir: weakref.finalize[..., LocalFederation] | None = None
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="securefl-"))
            self._remove_workdir = weakref.finalize(
                self, shutil.rmtree, workdir, ignore_errors=True
            )
        self.workdir = workdir
        (self.workdir / "records").mkdir(parents=True, exist_ok=True)
        private_dir(self.workdir / "state")  # privacy ledgers and mask round logs
        self.spec = ParamSpec.from_state_dict(initial_model.state_dict())
        self.hub = MemoryHub()
        self._server_transport = self.hub.connect(SERVER)
        # kept in the run folder (owner-only): records chain on under the same keys
        keys = identity_keys(self.workdir / KEYS_DIR, [*site_names, SERVER])
        self.signing_keys = {n: keys[n] for n in site_names}
        # the server's identity: it signs the round log an audit holds records against
        self.server_key = SigningKey.from_private_bytes(
            keys[SERVER].private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        )
        self.roster = Roster(
            federation=federation,
            sites={
                n: k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
                for n, k in self.signing_keys.items()
            },
            server=self.server_key.public_bytes(),
        )
        self.roster.save(self.workdir / "roster.json")
        self.config = FederationConfig(
            name=federation,
            secure=secure,
            privacy=privacy,
            distributed=distributed or DistributedConfig(),
            dp=dp,
            train=train,
            rounds=rounds,
            strategy=strategy,
            mask=mask or default_mask(),
            he=HEConfig(preset=he_preset or DEFAULT_HE_PRESET, keymaker=he_keymaker),
        )
        #: privacy = "distributed": the public plan every party derives from the file
        self.distributed = (
            DistributedPlan.from_config(
                self.config, dimension=self.spec.size, federation_size=len(site_names)
            )
            if privacy == "distributed"
            else None
        )
        setup = make_setup(
            self.config,
            roster=self.roster.sites,
            workdir=self.workdir,
            dropouts=dict(dropouts or {}),
            max_weight=max_weight,
            distributed=self.distributed,
            signing_keys={
                n: k.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
                for n, k in self.signing_keys.items()
            },
        )
        self.endings: dict[str, str] = {}
        self._failure: tuple[str, Exception] | None = None
        self._lock = threading.Lock()
        self.sites = {
            n: self._make_site(n, setup.site_mode(n), setup.decoder(n)) for n in site_names
        }
        self.driver = ServerDriver(
            federation=federation,
            mode=setup.server_mode,
            strategy=(
                make_strategy(strategy)
                if self.distributed is None
                else DistributedStep(make_strategy(strategy), self.distributed)
            ),
            model=setup.global_model(model_vector(initial_model, self.spec)),
            spec=self.spec,
            rounds=rounds,
            max_weight=max_weight,
            expected_sites=tuple(site_names),
        )
        if self._remove_workdir is None:  # a folder the caller keeps: nothing lost on a crash
            from securefl.runtime.server_state import ServerState
            from securefl.simulation.run_folder import SERVER_STATE_DIR

            ServerState(
                self.workdir / SERVER_STATE_DIR, federation=federation, mode=secure, spec=self.spec
            ).attach(self.driver)

    def _make_site(self, name: str, mode: AggregationMode, decoder: ModelDecoder) -> Site:
        writer = RecordWriter(
            self.workdir / "records" / f"{name}.jsonl",
            federation=self.federation,
            site=name,
            signing_key=self.signing_keys[name],
        )
        return Site(
            name=name,
            federation=self.federation,
            transport=self.hub.connect(name),
            mode=mode,
            dp=self.dp,
            train=self.train,
            rounds=self.rounds,
            state_dir=self.workdir / "state" / name,
            record_writer=writer,
            decode_model=decoder,
            roster=self.roster.sites,
            fix_model=self.fix_model,
            distributed=self.distributed,
        )

    def close(self) -> None:
        """Remove the temporary folder (only one this federation made itself)."""
        if self._remove_workdir is not None:
            self._remove_workdir()

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def run(
        self,
        train_site: Callable[[Site], Any],
        on_progress: Callable[[ServerDriver], None] | None = None,
    ) -> FederationRun:
        """Run ``train_site(site)`` for every site in its own thread; serve until done.

        Raises:
            Exception: the first error a site raised other than the expected
                endings (``BudgetExhaustedError``, a rehearsed dropout), as it
                was raised; the run stops there and the other sites are told.
        """
        threads = [
            threading.Thread(
                target=self._site_main, args=(site, train_site), name=name, daemon=True
            )
            for name, site in self.sites.items()
        ]
        for t in threads:
            t.start()
        try:
            run_server(
                self.driver,
                self._server_transport,
                keep_running=lambda: self._failure is None and any(t.is_alive() for t in threads),
                stage_timeout=self.rounds.stage_timeout_seconds,
                on_progress=on_progress,
                quiescent=lambda: self.hub.quiescent(SERVER),
            )
        except BaseException:  # Ctrl-C in the server's loop: the sites stop too, then it is raised
            self._stop_sites(threads)
            raise
        for t in threads:
            t.join(timeout=self.rounds.stage_timeout_seconds)
        if self._failure is not None:
            name, exc = self._failure
            exc.add_note(f"raised at site {name!r} of the local federation")
            raise exc
        return FederationRun(driver=self.driver, endings=dict(self.endings))

    def _stop_sites(self, threads: list[threading.Thread]) -> None:
        """Tell every site the run ends and wait for them, so their ledgers and records settle.

        A site inside a round charges and records what it ran before it
        stops (fail closed), as it does when a deployment's server goes away.
        """
        for env in self.driver.stop("the simulation was interrupted"):
            try:
                self._server_transport.send(env)
            except TransportError:
                log.debug("%s had already left", env.receiver)
        for t in threads:
            t.join(timeout=self.rounds.stage_timeout_seconds)

    def _site_main(self, site: Site, train_site: Callable[[Site], Any]) -> None:
        try:
            train_site(site)
        except SiteVanished as exc:  # a rehearsed dropout: no goodbye
            self.endings[site.name] = str(exc)
        except BudgetExhaustedError as exc:  # the site already told the server it leaves
            self.endings[site.name] = str(exc)
        except Exception as exc:  # run() raises the first; the others follow from it
            with self._lock:
                if self._failure is None:
                    self._failure = (site.name, exc)
            site.leave("site error")
        finally:
            site.transport.close()
