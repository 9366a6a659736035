"""A pool of simulated sites inside one Ray actor (``simulate --backend ray``).

Why a pool and not an actor per site: a process with torch and Opacus costs
about 360 MB, so hundreds of one-site actors cannot fit a machine. One actor
hosts many sites for the whole run (a SecAgg+ cohort must stay live through
all its stages) and each site is exactly the site of an in-process run: the
public :class:`~securefl.runtime.site.Site` loop with the built-in trainer,
its half built by :mod:`securefl.modes` as a deployed site builds it, over
a :class:`~securefl.transport.memory.MemoryHub` local to the actor. Each
site's loop is a thread blocked on its own queue; the sites of a pool take
turns on one core (torch runs one thread per actor) as the server's
envelopes reach them.

What stays in the actor: every site's Ed25519 identity key and X25519
exchange key are made here and only their public halves are returned (with,
for the neighbourhood mask round, the BLS public key and proof of possession
each site derives from its identity key, here too); in
``he`` mode the secret context is made by the keymaker site and reaches the
others sealed to their exchange keys, through the server, as in a
deployment. Ledgers, mask round logs and signed records go to the run folder
on disk (``state/``, ``records/``), laid out as an in-process run lays them
out. What crosses the actor boundary is envelopes (as bytes), the pool's
status and, at the end, each site's spend and counterfactual accuracy.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from securefl.config import FederationConfig
from securefl.data.federations import SiteData
from securefl.errors import BudgetExhaustedError, TransportError
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.sign import SigningKey
from securefl.modes import SiteHalf, site_setup
from securefl.params import ParamSpec, load_vector_into
from securefl.reports import RecordWriter
from securefl.runtime.global_model import decode_plain_model
from securefl.runtime.site import Site
from securefl.simulation.modes import STAGES, SiteVanished, _VanishingMode, bls_roster
from securefl.simulation.trainer import default_model, run_site
from securefl.transport.memory import MemoryHub
from securefl.wire import SERVER, Envelope

__all__ = ["Inbound", "PoolStatus", "SitePool", "SiteReport"]

log = logging.getLogger(__name__)

#: One envelope for a site: its encoded head, its receiver, and its payload
#: (bytes, or a Ray object reference to bytes shared by several envelopes).
Inbound = tuple[bytes, str, Any]

#: Stop collecting a pool's outgoing envelopes for one call past this many bytes.
_BATCH_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class PoolStatus:
    """What a pool tells the driver with every exchange (no secret, no update)."""

    #: every live site waits for a message and nothing is queued: only a deadline moves on
    quiescent: bool
    #: sites whose loop still runs
    alive: int
    #: sites that left (their transport is closed): the server cannot reach them
    gone: tuple[str, ...]
    #: ``(site, error)`` of the first unexpected site error, which stops the run
    failure: tuple[str, str] | None


@dataclass(frozen=True)
class SiteReport:
    """One site's end of the run, for ``summary.json``."""

    name: str
    epsilon: float
    noise_multiplier: float
    rounds_trained: int
    error: str
    local_only_accuracy: float
    local_only_test_accuracy: float


class _VanishingKeys:
    """he with ``--dropout``: the half the key step builds vanishes at the rehearsed stage."""

    def __init__(self, inner: Any, secure: str, at: str) -> None:
        self._inner, self._secure, self._at = inner, secure, at
        self.stages = inner.stages
        self._half: SiteHalf | None = None

    def _wrap(self, half: SiteHalf) -> SiteHalf:
        if self._half is None:
            mode = _VanishingMode(half.mode, STAGES[self._secure], self._at)
            self._half = SiteHalf(mode, half.decoder)
        return self._half

    def hello(self) -> tuple[list[Envelope], SiteHalf | None]:
        out, half = self._inner.hello()
        return out, None if half is None else self._wrap(half)

    def handle(self, env: Envelope) -> SiteHalf:
        return self._wrap(self._inner.handle(env))


class SitePool:
    """Sites ``names`` of one federation, hosted for the whole run (a Ray actor's class)."""

    def __init__(self, names: Sequence[str], workdir: str) -> None:
        torch.set_num_threads(1)  # the pool's sites take turns on one core
        self._names = list(names)
        self._workdir = Path(workdir)
        # made here, kept here: only the public halves leave (``public_keys``)
        self._identity = {n: Ed25519PrivateKey.generate() for n in self._names}
        self._exchange = {n: KeyPair.generate() for n in self._names}
        self._hub = MemoryHub()
        self._hub.connect(SERVER)  # the pool's outbox: every site sends to the server
        self._sites: dict[str, Site] = {}
        self._data: dict[str, SiteData] = {}
        self._threads: list[threading.Thread] = []
        self._gone: set[str] = set()
        self._endings: dict[str, str] = {}
        self._failure: tuple[str, str] | None = None
        self._lock = threading.Lock()
        self._config: FederationConfig | None = None
        self._initial: npt.NDArray[np.float32] | None = None

    def public_keys(self) -> dict[str, tuple[bytes, bytes]]:
        """Each site's public identity (Ed25519) and exchange (X25519) keys, raw."""
        return {
            n: (
                SigningKey(self._identity[n]).public_bytes(),
                self._exchange[n].public_bytes(),
            )
            for n in self._names
        }

    def bls_keys(self) -> dict[str, tuple[bytes, bytes]]:
        """Each site's BLS public key and proof of possession (the neighbourhood round).

        Derived here from each site's identity key, which never leaves the
        pool; the driver puts the pairs of every pool on the roster it gives
        the server and, through :meth:`start`, every site.
        """
        return bls_roster({n: SigningKey(self._identity[n]) for n in self._names})

    def start(
        self,
        *,
        config: FederationConfig,
        identity_keys: Mapping[str, bytes],
        exchange_keys: Mapping[str, bytes],
        data: Sequence[SiteData],
        initial: npt.NDArray[np.float32],
        num_classes: int,
        max_weight: float,
        dropouts: Mapping[str, str],
        noise: Mapping[str, float] | None = None,
        bls: Mapping[str, tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Build every site of the pool from its own keys and the roster, and start its loop.

        ``noise``: σ per site when the driver calibrated many unequal sites at once.
        ``bls``: every site's BLS public key and proof (the neighbourhood round).
        """
        self._config, self._initial = config, initial
        self._data = {d.name: d for d in data}
        for name in self._names:
            site = self._make_site(
                name, config, identity_keys, exchange_keys, max_weight, dropouts, bls
            )
            if noise and name in noise:
                site.dp = dataclasses.replace(site.dp, noise_multiplier=noise[name])
            self._sites[name] = site
            thread = threading.Thread(
                target=self._site_main, args=(site, num_classes), name=name, daemon=True
            )
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()

    def _make_site(
        self,
        name: str,
        config: FederationConfig,
        identity_keys: Mapping[str, bytes],
        exchange_keys: Mapping[str, bytes],
        max_weight: float,
        dropouts: Mapping[str, str],
        bls: Mapping[str, tuple[bytes, bytes]] | None,
    ) -> Site:
        signing = SigningKey(self._identity[name])
        state_dir = self._workdir / "state" / name
        half: SiteHalf | None
        keys: Any
        common: dict[str, Any] = {
            "name": name,
            "signing_key": signing,
            "identity_keys": identity_keys,
            "state_dir": state_dir,
            "federation": config.name,
            "strategy": config.strategy,
            "max_weight": max_weight,
            "min_sites": config.rounds.min_sites,
            "mask": config.mask,
        }
        he = config.secure == "he"
        half, keys = site_setup(
            config.secure,
            exchange_key=self._exchange[name] if he else None,
            exchange_keys=exchange_keys if he else None,
            he_keymaker=config.he.keymaker,
            he_preset=_preset(config) if he else None,
            bls_roster=bls,
            **common,
        )
        at = dropouts.get(name)
        if at is not None and half is not None:
            half = SiteHalf(_VanishingMode(half.mode, STAGES[config.secure], at), half.decoder)
        wrapped_keys: Any = keys
        if at is not None and keys is not None:
            wrapped_keys = _VanishingKeys(keys, config.secure, at)
        writer = RecordWriter(
            self._workdir / "records" / f"{name}.jsonl",
            federation=config.name,
            site=name,
            signing_key=self._identity[name],
        )
        return Site(
            name=name,
            federation=config.name,
            transport=self._hub.connect(name),
            mode=half.mode if half is not None else None,
            dp=config.dp,
            train=config.train,
            rounds=config.rounds,
            state_dir=state_dir,
            record_writer=writer,
            decode_model=half.decoder if half is not None else decode_plain_model,
            roster=[n for n in identity_keys if n != SERVER],
            keys=wrapped_keys,
        )

    def _site_main(self, site: Site, num_classes: int) -> None:
        """One site's loop, as :class:`~securefl.simulation.federation.LocalFederation` runs it."""
        assert self._config is not None and self._initial is not None
        config, data = self._config, self._data[site.name]
        try:
            model = default_model(data.x_train.shape[1], num_classes)
            load_vector_into(model, self._initial, ParamSpec.from_state_dict(model.state_dict()))
            run_site(
                site,
                data,
                model,
                batch_size=config.dp.batch_size,
                learning_rate=config.train.learning_rate,
                momentum=config.train.momentum,
                local_epochs=config.train.local_epochs,
            )
        except (SiteVanished, BudgetExhaustedError) as exc:  # endings a federation expects
            self._endings[site.name] = str(exc)
        except Exception as exc:  # the driver stops the run on the first one
            log.exception("site %s failed", site.name)
            with self._lock:
                if self._failure is None:
                    self._failure = (site.name, f"{type(exc).__name__}: {exc}")
            site.leave("site error")
        finally:
            site.transport.close()

    def exchange(self, inbound: Sequence[Inbound], wait: float) -> tuple[list[bytes], PoolStatus]:
        """Deliver the server's envelopes; return what the sites sent, waiting up to ``wait`` s.

        Returns once every live site waits with nothing queued (they answered
        all they were sent, or only a deadline can move the round on), or
        after ``wait`` seconds with what was sent so far: one call carries a
        whole stage of the pool's sites rather than one envelope.
        """
        refs = list(dict.fromkeys(p for _, _, p in inbound if not isinstance(p, bytes)))
        resolved: dict[Any, bytes] = {}
        if refs:  # each shared payload read once from the object store
            import ray

            resolved = dict(zip(refs, ray.get(refs), strict=True))
        for head, receiver, payload in inbound:
            body = payload if isinstance(payload, bytes) else resolved[payload]
            try:
                self._hub.deliver(head + body, receiver)
            except TransportError:
                self._gone.add(receiver)
        out: list[bytes] = []
        size = 0
        deadline = time.monotonic() + wait
        while size < _BATCH_BYTES:
            remaining = max(0.0, min(0.01, deadline - time.monotonic()))
            data = self._hub.take(SERVER, timeout=remaining)
            if data is not None:
                out.append(data)
                size += len(data)
                continue
            if time.monotonic() >= deadline or self._hub.quiescent(SERVER):
                break
        return out, self.status()

    def status(self) -> PoolStatus:
        """The pool's state now (see :class:`PoolStatus`)."""
        alive = [t for t in self._threads if t.is_alive()]
        gone = {t.name for t in self._threads if not t.is_alive()} | self._gone
        return PoolStatus(
            quiescent=self._hub.quiescent(SERVER),
            alive=len(alive),
            gone=tuple(sorted(gone)),
            failure=self._failure,
        )

    def join(self, timeout: float) -> int:
        """Wait for every site's loop to end (ledgers and records settle); return those left."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return sum(t.is_alive() for t in self._threads)

    def usage(self) -> tuple[float, int]:
        """This pool's CPU seconds so far and its peak resident memory in bytes (for planning)."""
        import resource

        rusage = resource.getrusage(resource.RUSAGE_SELF)
        return rusage.ru_utime + rusage.ru_stime, rusage.ru_maxrss * 1024

    def final_params(self) -> npt.NDArray[np.float32] | None:
        """The model a site decrypted at the end (he: the server never holds one)."""
        return next(
            (s.final_params for s in self._sites.values() if s.final_params is not None), None
        )

    def reports(
        self,
        *,
        test: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None,
        num_classes: int,
        seed: int,
        counterfactual: bool,
    ) -> list[SiteReport]:
        """Each site's spend and, with ``counterfactual``, the model it could train alone."""
        from securefl.simulation.orchestrator import _local_only_model
        from securefl.simulation.trainer import accuracy

        assert self._config is not None
        config, out, nan = self._config, [], float("nan")
        for name, site in self._sites.items():
            sigma, rounds = site.noise_multiplier or 0.0, len(site.history)
            local_val = local_test = nan
            if counterfactual and sigma and rounds:
                data = self._data[name]
                local = _local_only_model(
                    data, num_classes, config.dp, config.train, rounds, sigma, seed
                )
                local_val = accuracy(local, data.x_val, data.y_val)
                local_test = accuracy(local, *test) if test is not None else nan
            out.append(
                SiteReport(
                    name=name,
                    epsilon=site.ledger.spent(),
                    noise_multiplier=sigma,
                    rounds_trained=rounds,
                    error=self._endings.get(name, ""),
                    local_only_accuracy=local_val,
                    local_only_test_accuracy=local_test,
                )
            )
        return out


def _preset(config: FederationConfig) -> Any:
    from securefl.he import preset_by_name

    return preset_by_name(config.he.preset)
