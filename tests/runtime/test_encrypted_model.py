"""The he-mode global model: the server holds θ₀ and ciphertexts; sites replay the strategy."""

import numpy as np
import pytest

from securefl.aggregation import RoundContext
from securefl.config import StrategyConfig
from securefl.errors import AbortError, IntegrityError
from securefl.hazmat.sign import SigningKey
from securefl.he import CKKS_N4096, HEServerMode, HESiteMode, SecretContext
from securefl.runtime.encrypted_model import EncryptedAggregatesModel, EncryptedModelDecoder
from securefl.strategy import make_strategy
from securefl.wire import pack, unpack

D = 16


KEYS = {s: SigningKey.generate() for s in ("a", "b")}
ROSTER = {s: k.public_bytes() for s, k in KEYS.items()}


@pytest.fixture(scope="module")
def secret():
    return SecretContext.generate(CKKS_N4096)


def _decoder(secret):
    return EncryptedModelDecoder(secret, roster=ROSTER, federation="f")


def _aggregate(secret, round_id, updates, encrypt=None):
    ctx = RoundContext(
        federation="f", round=round_id, cohort=("a", "b"), dimension=D, max_weight=10.0
    )
    public = secret.signed_public_context(federation="f", maker="a", signing_key=KEYS["a"])
    server = HEServerMode(public, roster=ROSTER, federation="f").server(ctx)
    for site, (vector, weight) in updates.items():
        mode = HESiteMode(secret, site_id=site, signing_key=KEYS[site], processes=False)
        (env,) = mode.site(ctx, site).submit(vector, weight)
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
    theta1 = _decoder(secret)(payload, D)
    np.testing.assert_allclose(theta1, theta0 + (0.1 * 1 - 0.3 * 3) / 4, atol=1e-5)


def test_a_site_refuses_a_rewritten_or_shortened_history(secret):
    config = StrategyConfig(name="fedavgm")
    model = EncryptedAggregatesModel(np.zeros(D, np.float32), config)
    strategy = make_strategy(config)
    for r in (1, 2):
        upd = np.full(D, 0.01 * r, np.float32)
        model.apply(_aggregate(secret, r, {"a": (upd, 1.0), "b": (upd, 1.0)}), strategy, r)
    decoder = _decoder(secret)
    decoder(model.payload(), D)
    obj = unpack(model.payload())
    shortened = pack({**obj, "aggregates": obj["aggregates"][:1]})
    with pytest.raises(IntegrityError):
        decoder(shortened, D)
    reweighted = dict(obj["aggregates"][0], weight=7.0)
    rewritten = pack({**obj, "aggregates": [reweighted, obj["aggregates"][1]]})
    with pytest.raises(IntegrityError):
        decoder(rewritten, D)


def test_a_site_refuses_an_old_round_replayed_as_a_new_one(secret):
    config = StrategyConfig(name="fedavg")
    model = EncryptedAggregatesModel(np.zeros(D, np.float32), config)
    upd = np.full(D, 0.01, np.float32)
    first = _aggregate(secret, 1, {"a": (upd, 1.0), "b": (upd, 1.0)})
    model.apply(first, make_strategy(config), 1)
    model.apply(first, make_strategy(config), 2)  # the server adds round 1's sum again
    with pytest.raises(IntegrityError, match="replayed"):
        _decoder(secret)(model.payload(), D)


def test_a_site_refuses_an_infeasible_aggregate_and_applies_nothing(secret):
    """A cheating site's out-of-range values reach the sum; every site stops instead of using it."""
    config = StrategyConfig(name="fedavg")
    model = EncryptedAggregatesModel(np.zeros(D, np.float32), config)
    good = _aggregate(
        secret,
        1,
        {"a": (np.full(D, 0.01, np.float32), 1.0), "b": (np.full(D, 0.01, np.float32), 1.0)},
    )
    model.apply(good, make_strategy(config), 1)
    decoder = _decoder(secret)
    theta1 = decoder(model.payload(), D)
    bad = _aggregate(
        secret,
        2,
        {"a": (np.full(D, 0.01, np.float32), 1.0), "b": (np.full(D, 0.01, np.float32), 1.0)},
    )
    obj = unpack(bad.encrypted_sum)
    from securefl.he._codec import encrypt_chunks

    obj["chunks"] = encrypt_chunks(secret, np.full(D, 50.0))  # beyond 2 · clip
    model.apply(
        type(bad)(total_weight=bad.total_weight, survivors=bad.survivors, encrypted_sum=pack(obj)),
        make_strategy(config),
        2,
    )
    with pytest.raises(AbortError, match="honest"):
        decoder(model.payload(), D)
    # the site's model is still round 1's
    np.testing.assert_array_equal(decoder._theta.astype(np.float32), theta1)
