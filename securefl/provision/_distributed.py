"""What a ``privacy = "distributed"`` kit states in public, derived once at provisioning.

Why at provisioning: every number a party of a distributed-DP federation
relies on (the sample rate q, the expected batch size q × records the server
divides by, the scale γ, the central Skellam variance μ, each site's noise
share μ / (t − c), the masking threshold t and the colluders c it withstands,
the ring) follows from ``federation.toml``, the model's size and the
roster's. Deriving the plan here refuses, in one line, a file whose plan
cannot be made (no q or records, a noise multiplier set by hand, a budget
the calibration cannot meet) before any kit is handed out; the README of
every kit states the numbers for the operators. The kits carry no copy of
the numbers to trust: each party derives them again from its own kit, and a
site refuses a server that announces anything else.
"""

from __future__ import annotations

import json
from pathlib import Path

from securefl.config import FederationConfig
from securefl.errors import ConfigError
from securefl.params import ParamSpec

__all__ = ["check_distributed", "distributed_note"]


def distributed_note(config: FederationConfig, ca_dir: Path, fed_path: Path) -> str:
    """The kit README's section on distributed DP ('' for ``privacy = "local"``); raises early.

    ``ca_dir`` holds the initial model's ``spec.json`` (its size is the plan's dimension).
    """
    if config.privacy != "distributed":
        return ""
    spec = ParamSpec.from_dict(json.loads((ca_dir / "spec.json").read_text(encoding="utf-8")))
    from securefl.runtime._distributed import DistributedPlan

    names = tuple(sorted(s.name for s in config.sites))
    try:
        plan = DistributedPlan.from_config(config, dimension=spec.size, federation_size=len(names))
        share = plan.share(federation=config.name, round_id=1, cohort=names)
    except ConfigError as exc:
        raise ConfigError(f'{fed_path}: privacy = "distributed" cannot run ({exc})') from None
    per_site = float(share.variance)
    return _NOTE.format(
        q=plan.sample_rate,
        records=config.distributed.records,
        batch=plan.expected_batch_size,
        scale=plan.scale,
        clip=plan.clip,
        mu=plan.mu_total,
        sigma=plan.noise_multiplier,
        t=share.threshold,
        n=len(names),
        c=share.colluders,
        share=per_site,
        bits=plan.ring.bits,
        epsilon=config.dp.epsilon,
        delta=config.dp.delta,
        rounds=config.rounds.max_rounds,
    )


_NOTE = """
## Distributed DP (public numbers)

This federation runs `privacy = "distributed"`: each round is one DP-SGD step
over the union of the sites' Poisson samples; each site adds a share of the
noise, and only the masked sum carries all of it. Every party derives these
numbers from its own `federation.toml`, model and roster; a site refuses a
round whose server announces any other.

- sample rate q = {q:g} over a declared {records} records: expected batch
  size {batch:g}, the number the server divides each round's sum by;
- clip C = {clip:g}, integer scale γ = {scale:g};
- central Skellam variance μ = {mu} (noise multiplier {sigma:.4g}), calibrated for
  ε = {epsilon:g}, δ = {delta:g} over {rounds} rounds;
- masking threshold t = {t} of the {n} sites (full cohort), colluders assumed
  c = {c}: each site adds Skellam noise of variance μ / (t − c) = {share:.6g}
  per coordinate (a smaller cohort's t is computed alike by each site);
- ring Z_2^{bits}.
"""


def check_distributed(config: FederationConfig, fed_path: Path) -> None:
    """Refuse, in one line, a distributed-DP file whose plan cannot be made (nothing written)."""
    if config.privacy != "distributed":
        return
    import tempfile

    from securefl.provision._model import write_initial_model

    with tempfile.TemporaryDirectory() as tmp:
        write_initial_model(config.model, Path(tmp))
        distributed_note(config, Path(tmp), fed_path)
