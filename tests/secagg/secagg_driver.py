"""A sans-IO driver for masked rounds in tests: routes envelopes between the halves.

Hooks: ``drop`` maps a site to the site-to-server stage from which its
envelopes are suppressed (as the runtime's ``--dropout SITE@STAGE`` does);
``tamper`` may rewrite (or swallow, by returning None) any envelope in
flight; ``server_log`` records the bytes of every envelope the server
receives. :func:`edit_payload` builds the usual tamper (edit the payload of
one stage from one sender or to one receiver) and :func:`chain` runs several.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from securefl.aggregation.base import AggregateResult, RoundContext
from securefl.errors import AbortError
from securefl.hazmat.sign import SigningKey
from securefl.secagg import (
    STAGES,
    MaskConfig,
    MaskServer,
    MaskServerMode,
    MaskSite,
    MaskSiteMode,
    bls_entry,
)
from securefl.wire import SERVER, Envelope, pack, unpack

Tamper = Callable[[Envelope], Envelope | None]
QUICK_D = 16
"""Update length in :func:`quick_round`."""
Edit = Callable[[dict[str, Any]], object]


def edit_payload(
    stage: str, edit: Edit, *, sender: str | None = None, receiver: str | None = None
) -> Tamper:
    """A tamper that lets ``edit`` change, in place, the unpacked payload of ``stage``.

    Only envelopes of that stage from ``sender`` and to ``receiver`` (where
    given) are touched; the edited body is packed back into the same envelope.
    """

    def tamper(env: Envelope) -> Envelope:
        if env.stage != stage:
            return env
        if (sender is not None and env.sender != sender) or (
            receiver is not None and env.receiver != receiver
        ):
            return env
        body = unpack(env.payload)
        edit(body)
        return dataclasses.replace(env, payload=pack(body))

    return tamper


def chain(*tampers: Tamper) -> Tamper:
    """Apply ``tampers`` in order; one that swallows the envelope stops the chain."""

    def tamper(env: Envelope) -> Envelope | None:
        out: Envelope | None = env
        for t in tampers:
            if out is None:
                break
            out = t(out)
        return out

    return tamper


def round_digest(round_id: int, dimension: int, max_weight: float, model: bytes = b"") -> bytes:
    """Stands in for the SHA-256 of a round-start payload the runtime computes."""
    return hashlib.sha256(repr((round_id, dimension, max_weight, model)).encode()).digest()


def site_names(n: int) -> tuple[str, ...]:
    return tuple(f"site-{i:02d}" for i in range(n))


def wide_federation(tmp: Path, n: int, config: MaskConfig) -> Federation:
    """A federation whose ids sort in cohort order beyond 100 sites (site-000, ...)."""
    fed = Federation(tmp, 3, config)
    fed.n, fed.names = n, tuple(f"site-{i:03d}" for i in range(n))
    fed.keys = {s: SigningKey.generate() for s in fed.names}
    fed.roster = {s: k.public_bytes() for s, k in fed.keys.items()}
    fed.bls_roster = {s: bls_entry(k) for s, k in fed.keys.items()}
    return fed


@dataclass
class Federation:
    """n sites with identity keys and state files, plus the server's roster."""

    tmp: Path
    n: int
    config: MaskConfig
    federation: str = "fed"
    keys: dict[str, SigningKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.names = site_names(self.n)
        self.keys = {s: SigningKey.generate() for s in self.names}
        self.roster = {s: k.public_bytes() for s, k in self.keys.items()}
        self.bls_roster = {s: bls_entry(k) for s, k in self.keys.items()}

    def ctx(self, round_id: int, dimension: int, max_weight: float = 100.0) -> RoundContext:
        return RoundContext(
            federation=self.federation,
            round=round_id,
            cohort=self.names,
            dimension=dimension,
            max_weight=max_weight,
            round_digest=round_digest(round_id, dimension, max_weight),
        )

    def site_mode(self, name: str) -> MaskSiteMode:
        return MaskSiteMode(
            site_id=name,
            signing_key=self.keys[name],
            roster=self.roster,
            state_path=self.tmp / f"{name}.json",
            config=self.config,
            bls_roster=self.bls_roster,
        )

    def sites(
        self, ctx: RoundContext, contexts: Mapping[str, RoundContext] | None = None
    ) -> dict[str, MaskSite]:
        """Every site's half; ``contexts`` gives some sites another round start than ``ctx``."""
        out = {}
        for s in ctx.cohort:
            half = self.site_mode(s).site((contexts or {}).get(s, ctx), s)
            assert isinstance(half, MaskSite)
            out[s] = half
        return out

    def server(self, ctx: RoundContext) -> MaskServer:
        half = MaskServerMode(
            roster=self.roster, config=self.config, bls_roster=self.bls_roster
        ).server(ctx)
        assert isinstance(half, MaskServer)
        return half


@dataclass
class Run:
    result: AggregateResult | None
    server: MaskServer
    sent_by: dict[str, list[str]]
    server_log: list[bytes]
    aborted: dict[str, AbortError]
    server_abort: AbortError | None


def run_round(
    fed: Federation,
    ctx: RoundContext,
    updates: dict[str, npt.NDArray[np.float32]],
    weights: dict[str, float],
    *,
    drop: dict[str, str] | None = None,
    tamper: Tamper | None = None,
    server_config: MaskConfig | None = None,
    contexts: Mapping[str, RoundContext] | None = None,
) -> Run:
    """Drive one round to completion; a stage ends on the deadline if someone is silent.

    ``server_config`` runs the server half under another configuration than
    the sites' (a server set up with a lower threshold, say); ``contexts``
    gives some sites another round start (another model or settings).
    """
    drop = drop or {}
    if server_config is None:
        server = fed.server(ctx)
    else:
        half = MaskServerMode(
            roster=fed.roster, config=server_config, bls_roster=fed.bls_roster
        ).server(ctx)
        assert isinstance(half, MaskServer)
        server = half
    sites = fed.sites(ctx, contexts)
    sent_by: dict[str, list[str]] = {s: [] for s in sites}
    server_log: list[bytes] = []
    aborted: dict[str, AbortError] = {}
    outbox: list[Envelope] = []

    def vanished(env: Envelope) -> bool:
        cut = drop.get(env.sender)
        return cut is not None and STAGES.index(env.stage) >= STAGES.index(cut)

    for s, half in sites.items():
        outbox += half.submit(updates[s], weights[s])
    server_abort = None
    try:
        while server.result is None:
            if not outbox:
                outbox += server.on_deadline()
                continue
            env = outbox.pop(0)
            if tamper is not None:
                changed = tamper(env)
                if changed is None:
                    continue
                env = changed
            if env.receiver == SERVER:
                if vanished(env):
                    continue
                sent_by[env.sender].append(env.stage)
                server_log.append(env.to_bytes())
                outbox += server.handle(Envelope.from_bytes(env.to_bytes()))
            else:
                if env.receiver in aborted:
                    continue
                try:
                    outbox += sites[env.receiver].handle(env)
                except AbortError as exc:
                    aborted[env.receiver] = exc
    except AbortError as exc:
        server_abort = exc
    return Run(server.result, server, sent_by, server_log, aborted, server_abort)


def quick_round(
    fed: Federation,
    tamper: Tamper | None = None,
    *,
    round_id: int = 1,
    drop: dict[str, str] | None = None,
    dimension: int = QUICK_D,
) -> Run:
    """One round of the whole federation on seeded updates, every weight 1."""
    return run_round(
        fed,
        fed.ctx(round_id, dimension),
        random_updates(fed.names, dimension),
        dict.fromkeys(fed.names, 1.0),
        tamper=tamper,
        drop=drop,
    )


def plaintext(
    updates: dict[str, npt.NDArray[np.float32]],
    weights: dict[str, float],
    survivors: tuple[str, ...],
    clip: float,
) -> tuple[npt.NDArray[np.float64], float]:
    """The sum the protocol should reveal: Σ w·clip(Δ) over ``survivors``, and Σ w."""
    total = sum(weights[s] * np.clip(updates[s].astype(np.float64), -clip, clip) for s in survivors)
    return np.asarray(total, dtype=np.float64), sum(weights[s] for s in survivors)


def random_updates(
    names: tuple[str, ...],
    d: int,
    scale: float = 0.5,
) -> dict[str, npt.NDArray[np.float32]]:
    """Test inputs only (not keys or masks), so a seeded NumPy generator is fine here."""
    rng = np.random.default_rng(1234)
    return {s: (rng.standard_normal(d) * scale).astype(np.float32) for s in names}
