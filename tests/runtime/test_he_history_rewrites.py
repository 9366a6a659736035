"""A server that rewrites θ₀ or the strategy of a running he federation is refused.

The server holds θ₀ and the strategy in the clear and resends them with the
history; a site that already holds the history must not accept another θ₀
(a whole history resent from 0, e.g. after a hello) nor another strategy in
an incremental payload: either would move the site's model where the server
likes, under the same encrypted aggregates.
"""

import numpy as np
import pytest

from securefl.aggregation import RoundContext
from securefl.config import StrategyConfig
from securefl.errors import IntegrityError, ProtocolError
from securefl.hazmat.sign import SigningKey
from securefl.he import CKKS_N4096, HEServerMode, HESiteMode, SecretContext
from securefl.runtime.encrypted_model import (
    EncryptedAggregatesModel,
    EncryptedModelDecoder,
    _strategy_fields,
)
from securefl.strategy import make_strategy
from securefl.wire import array_to_wire, pack, unpack

D = 16
SITES = ("a", "b", "c", "d")
KEYS = {s: SigningKey.generate() for s in SITES}
ROSTER = {s: k.public_bytes() for s, k in KEYS.items()}
MAX_WEIGHT = 10.0
FEDAVG = StrategyConfig(name="fedavg")
THETA0 = np.linspace(-0.5, 0.5, D).astype(np.float32)


@pytest.fixture(scope="module")
def secret():
    return SecretContext.generate(CKKS_N4096)


@pytest.fixture(scope="module")
def history(secret):
    """The honest server's model after two rounds of sites a, b, c."""
    modes = {
        s: HESiteMode(
            secret, site_id=s, signing_key=KEYS[s], max_weight=MAX_WEIGHT, processes=False
        )
        for s in "abc"
    }
    public = secret.signed_public_context(federation="f", maker="a", signing_key=KEYS["a"])
    model = EncryptedAggregatesModel(THETA0, FEDAVG)
    for r in (1, 2):
        ctx = RoundContext(
            federation="f", round=r, cohort=("a", "b", "c"), dimension=D, max_weight=MAX_WEIGHT
        )
        server = HEServerMode(public, roster=ROSTER, federation="f").server(ctx)
        for i, s in enumerate("abc"):
            (env,) = modes[s].site(ctx, s).submit(np.full(D, 0.01 * (i + r), np.float32), 1.0)
            server.handle(env)
        assert server.result is not None
        model.apply(server.result, make_strategy(FEDAVG), r)
    return model


def _decoder(secret):
    mode = HESiteMode(
        secret, site_id="d", signing_key=KEYS["d"], max_weight=MAX_WEIGHT, processes=False
    )
    return EncryptedModelDecoder(mode, roster=ROSTER, federation="f", strategy=FEDAVG, min_sites=3)


@pytest.mark.parametrize("held", [0, 2], ids=["before-any-aggregate", "after-two"])
def test_a_site_refuses_a_rewritten_initial_model(secret, history, held):
    """The server resends the whole history from 0 with another θ₀ and the same aggregates."""
    honest = unpack(history.payload())
    site = _decoder(secret)
    site(pack({**honest, "aggregates": honest["aggregates"][:held]}), D)
    head = site.history_digest()
    moved = array_to_wire(THETA0 + np.float32(0.25))
    with pytest.raises(IntegrityError):
        site(pack({**honest, "theta0": moved, "aggregates": honest["aggregates"][:held]}), D)
    with pytest.raises(IntegrityError):
        site(pack({**honest, "theta0": moved}), D)
    # nothing of the rewrite was kept: the honest history still continues the site's own
    assert site.history_digest() == head
    fresh = _decoder(secret)
    np.testing.assert_array_equal(site(history.payload(), D), fresh(history.payload(), D))


@pytest.mark.parametrize(
    "announced",
    [StrategyConfig(name="fedavg", server_lr=1e9), StrategyConfig(name="fedavgm", momentum=0.9)],
    ids=["server-lr", "momentum"],
)
def test_a_site_refuses_a_strategy_changed_mid_run(secret, history, announced):
    """A payload announcing another strategy than the one the site runs, part or whole."""
    honest = unpack(history.payload())
    site = _decoder(secret)
    site(pack({**honest, "aggregates": honest["aggregates"][:1]}), D)
    head = site.history_digest()
    tail = {**honest, "theta0": None, "start": 1, "aggregates": honest["aggregates"][1:]}
    with pytest.raises(ProtocolError):
        site(pack({**tail, "strategy": _strategy_fields(announced)}), D)
    # nor with the whole history resent from θ₀ (the strategy is in the chain's first link)
    with pytest.raises((IntegrityError, ProtocolError)):
        site(pack({**honest, "strategy": _strategy_fields(announced)}), D)
    assert site.history_digest() == head
    # the honest continuation is still accepted and gives the honest model
    np.testing.assert_array_equal(site(pack(tail), D), _decoder(secret)(history.payload(), D))
