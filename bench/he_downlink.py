"""Round-start downlink in he mode: whole history per round vs only what a site lacks.

Builds real CKKS aggregates of a 62-parameter model (the bundled data's
logistic regression: 30 features, 2 classes) for ``--rounds`` rounds and
counts the model bytes each site receives over the run: with the whole
history re-sent at every round start (before) and with only the aggregates
the site has not acknowledged (now). Run: ``python bench/he_downlink.py``.
"""

from __future__ import annotations

import argparse

import numpy as np

from securefl.aggregation import RoundContext
from securefl.config import StrategyConfig
from securefl.hazmat.sign import SigningKey
from securefl.he import PRESETS, HEServerMode, HESiteMode, SecretContext
from securefl.runtime.encrypted_model import EncryptedAggregatesModel
from securefl.strategy import make_strategy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--preset", default="bfv-n4096")
    parser.add_argument("--dimension", type=int, default=62)
    args = parser.parse_args()
    sites = ("a", "b", "c")
    keys = {s: SigningKey.generate() for s in sites}
    roster = {s: k.public_bytes() for s, k in keys.items()}
    secret = SecretContext.generate(PRESETS[args.preset])
    public = secret.signed_public_context(federation="f", maker="a", signing_key=keys["a"])
    modes = {
        s: HESiteMode(secret, site_id=s, signing_key=keys[s], max_weight=200.0, processes=False)
        for s in sites
    }
    config = StrategyConfig(name="fedadam")
    model = EncryptedAggregatesModel(np.zeros(args.dimension, np.float32), config)
    strategy = make_strategy(config)
    rng = np.random.default_rng(0)  # benchmark data, not a security use
    before = now = 0
    for r in range(1, args.rounds + 1):
        before += len(model.payload())
        now += len(model.payload_for("a"))
        model.acknowledge("a")
        ctx = RoundContext(
            federation="f", round=r, cohort=sites, dimension=args.dimension, max_weight=200.0
        )
        server = HEServerMode(public, roster=roster, federation="f").server(ctx)
        for s in sites:
            update = rng.uniform(-0.01, 0.01, args.dimension).astype(np.float32)
            server.handle(modes[s].site(ctx, s).submit(update, 100.0)[0])
        assert server.result is not None
        model.apply(server.result, strategy, r)
    before += len(model.payload())  # the finish message
    now += len(model.payload_for("a"))
    print(f"{args.preset}, {args.rounds} rounds, one site's model downlink over the run:")
    print(f"  whole history every round start: {before / 1e6:.2f} MB")
    print(f"  only what it has not acknowledged: {now / 1e6:.2f} MB ({before / now:.1f}x less)")


if __name__ == "__main__":
    main()
