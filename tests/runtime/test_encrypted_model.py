"""The he-mode global model: the server holds θ₀ and ciphertexts; sites replay the strategy."""

import numpy as np
import pytest

from securefl.aggregation import RoundContext
from securefl.config import StrategyConfig
from securefl.errors import IntegrityError
from securefl.he import CKKS_N4096, HEServerMode, HESiteMode, SecretContext
from securefl.runtime.encrypted_model import EncryptedAggregatesModel, EncryptedModelDecoder
from securefl.strategy import make_strategy
from securefl.wire import pack, unpack

D = 16


@pytest.fixture(scope="module")
def secret():
    return SecretContext.generate(CKKS_N4096)


def _aggregate(secret, round_id, updates):
    ctx = RoundContext(
        federation="f", round=round_id, cohort=("a", "b"), dimension=D, max_weight=10.0
    )
    server = HEServerMode(secret.public_context_bytes()).server(ctx)
    for site, (vector, weight) in updates.items():
        (env,) = HESiteMode(secret, processes=False).site(ctx, site).submit(vector, weight)
        server.handle(env)
    return server.result


def test_server_holds_no_plaintext_and_sites_get_the_fedavg_model(secret):
    theta0 = np.linspace(-1, 1, D).astype(np.float32)
    config = StrategyConfig(name="fedavg")
    model = EncryptedAggregatesModel(theta0, config)
    a, b = np.full(D, 0.1, np.float32), np.full(D, -0.3, np.float32)
    model.apply(_aggregate(secret, 1, {"a": (a, 1.0), "b": (b, 3.0)}), make_strategy(config), 1)
    assert model.plaintext() is None
    payload = model.payload()
    for update in (a, b):
        assert update.tobytes() not in payload
    theta1 = EncryptedModelDecoder(secret)(payload, D)
    np.testing.assert_allclose(theta1, theta0 + (0.1 * 1 - 0.3 * 3) / 4, atol=1e-5)


def test_a_site_refuses_a_rewritten_or_shortened_history(secret):
    config = StrategyConfig(name="fedavgm")
    model = EncryptedAggregatesModel(np.zeros(D, np.float32), config)
    strategy = make_strategy(config)
    for r in (1, 2):
        upd = np.full(D, 0.01 * r, np.float32)
        model.apply(_aggregate(secret, r, {"a": (upd, 1.0), "b": (upd, 1.0)}), strategy, r)
    decoder = EncryptedModelDecoder(secret)
    decoder(model.payload(), D)
    obj = unpack(model.payload())
    shortened = pack({**obj, "aggregates": obj["aggregates"][:1]})
    with pytest.raises(IntegrityError):
        decoder(shortened, D)
    reweighted = dict(obj["aggregates"][0], weight=7.0)
    rewritten = pack({**obj, "aggregates": [reweighted, obj["aggregates"][1]]})
    with pytest.raises(IntegrityError):
        decoder(rewritten, D)
