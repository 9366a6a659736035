"""An in-process federation: a server and several Sites over the memory transport.

This is what lets a user try their own training loop against a real
federation (same driver, same Site API, same aggregators) before any
network or certificate exists; ``securefl simulate`` is built on it.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from securefl.aggregation.base import AggregationMode
from securefl.config import DPConfig, RoundConfig, StrategyConfig, TrainConfig
from securefl.errors import BudgetExhaustedError, ConfigError, SecureFLError
from securefl.hazmat.sign import SigningKey
from securefl.params import ParamSpec, model_vector
from securefl.reports import RecordWriter, Roster
from securefl.runtime.loop import run_server
from securefl.runtime.server import ServerDriver
from securefl.runtime.site import ModelDecoder, Site
from securefl.simulation.modes import SiteVanished, make_setup
from securefl.strategy.fedavg import make_strategy
from securefl.transport.memory import MemoryHub
from securefl.wire import SERVER

__all__ = ["LocalFederation"]

log = logging.getLogger(__name__)


class LocalFederation:
    """A whole federation in this process; each site's loop runs in a thread.

    Example::

        fed = LocalFederation(site_names=["a", "b", "c"], initial_model=model, ...)
        fed.run(lambda site: my_training(site))   # my_training uses the Site API
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
    ) -> None:
        if len(set(site_names)) != len(site_names) or len(site_names) < rounds.min_sites:
            raise ConfigError(f"need at least {rounds.min_sites} distinct site names")
        self.federation = federation
        self.secure = secure
        self.dp, self.train, self.rounds = dp, train, rounds
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="securefl-"))
        (self.workdir / "records").mkdir(parents=True, exist_ok=True)
        self.spec = ParamSpec.from_state_dict(initial_model.state_dict())
        self.hub = MemoryHub()
        self._server_transport = self.hub.connect(SERVER)
        self.signing_keys = {n: Ed25519PrivateKey.generate() for n in site_names}
        # the server's identity: it signs the round log an audit holds records against
        self.server_key = SigningKey.generate()
        self.roster = Roster(
            federation=federation,
            sites={
                n: k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
                for n, k in self.signing_keys.items()
            },
            server=self.server_key.public_bytes(),
        )
        self.roster.save(self.workdir / "roster.json")
        setup = make_setup(
            secure,
            roster=self.roster.sites,
            workdir=self.workdir,
            strategy=strategy,
            dropouts=dict(dropouts or {}),
            he_preset=he_preset,
            federation=federation,
            max_weight=max_weight,
            min_sites=rounds.min_sites,
            signing_keys={
                n: k.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
                for n, k in self.signing_keys.items()
            },
        )
        self.errors: dict[str, str] = {}
        self.failures: dict[str, SecureFLError] = {}
        self.vanished: dict[str, str] = {}
        self.sites = {
            n: self._make_site(n, setup.site_mode(n), setup.decoder(n)) for n in site_names
        }
        self.driver = ServerDriver(
            federation=federation,
            mode=setup.server_mode,
            strategy=make_strategy(strategy),
            model=setup.global_model(model_vector(initial_model, self.spec)),
            spec=self.spec,
            rounds=rounds,
            max_weight=max_weight,
            expected_sites=tuple(site_names),
        )

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
        )

    def run(
        self,
        train_site: Callable[[Site], Any],
        on_progress: Callable[[ServerDriver], None] | None = None,
    ) -> ServerDriver:
        """Run ``train_site(site)`` for every site in its own thread; serve until done."""
        threads = [
            threading.Thread(
                target=self._site_main, args=(site, train_site), name=name, daemon=True
            )
            for name, site in self.sites.items()
        ]
        for t in threads:
            t.start()
        run_server(
            self.driver,
            self._server_transport,
            keep_running=lambda: any(t.is_alive() for t in threads),
            stage_timeout=self.rounds.stage_timeout_seconds,
            on_progress=on_progress,
            quiescent=lambda: self.hub.quiescent(SERVER),
        )
        for t in threads:
            t.join(timeout=self.rounds.stage_timeout_seconds)
        return self.driver

    def _site_main(self, site: Site, train_site: Callable[[Site], Any]) -> None:
        try:
            train_site(site)
        except SiteVanished as exc:  # a rehearsed dropout: no goodbye
            self.vanished[site.name] = str(exc)
        except BudgetExhaustedError as exc:
            self.errors[site.name] = str(exc)
        except SecureFLError as exc:
            self.errors[site.name] = str(exc)
            self.failures[site.name] = exc
            site.leave(str(exc))
        except Exception as exc:  # report, never hang the server
            log.exception("site %s failed", site.name)
            self.errors[site.name] = f"{type(exc).__name__}: {exc}"
            site.leave("internal error")
        finally:
            site.transport.close()
