"""The he-mode global model: the server holds θ₀ and ciphertexts; sites replay the strategy."""

import numpy as np
import pytest

from securefl.aggregation import RoundContext
from securefl.config import StrategyConfig
from securefl.errors import AbortError, IntegrityError, ProtocolError
from securefl.hazmat.sign import SigningKey
from securefl.he import CKKS_N4096, HEServerMode, HESiteMode, SecretContext
from securefl.runtime.encrypted_model import EncryptedAggregatesModel, EncryptedModelDecoder
from securefl.strategy import make_strategy
from securefl.wire import pack, unpack

D = 16


KEYS = {s: SigningKey.generate() for s in ("a", "b", "c", "d")}
ROSTER = {s: k.public_bytes() for s, k in KEYS.items()}
MAX_WEIGHT = 10.0
#: Each site's own mode, kept across rounds (it records the rounds it took part in).
MODES: dict[tuple[int, str], HESiteMode] = {}


@pytest.fixture(scope="module")
def secret():
    return SecretContext.generate(CKKS_N4096)


def _mode(secret, site):
    key = (id(secret), site)
    if key not in MODES:
        MODES[key] = HESiteMode(
            secret, site_id=site, signing_key=KEYS[site], max_weight=MAX_WEIGHT, processes=False
        )
    return MODES[key]


def _decoder(secret, config=None, site="d"):
    """Site ``site``'s decoder, with the site's own strategy and min_sites = 3."""
    return EncryptedModelDecoder(
        _mode(secret, site),
        roster=ROSTER,
        federation="f",
        strategy=config or StrategyConfig(name="fedavg"),
        min_sites=3,
    )


def _aggregate(secret, round_id, updates, cohort=("a", "b", "c")):
    ctx = RoundContext(
        federation="f", round=round_id, cohort=cohort, dimension=D, max_weight=MAX_WEIGHT
    )
    public = secret.signed_public_context(federation="f", maker="a", signing_key=KEYS["a"])
    server = HEServerMode(public, roster=ROSTER, federation="f").server(ctx)
    for site, (vector, weight) in updates.items():
        (env,) = _mode(secret, site).site(ctx, site).submit(vector, weight)
        server.handle(env)
    return server.result


def test_server_holds_no_plaintext_and_sites_get_the_fedavg_model(secret):
    theta0 = np.linspace(-1, 1, D).astype(np.float32)
    config = StrategyConfig(name="fedavg")
    model = EncryptedAggregatesModel(theta0, config)
    a, b = np.full(D, 0.1, np.float32), np.full(D, -0.3, np.float32)
    c = np.full(D, 0.2, np.float32)
    result = _aggregate(secret, 1, {"a": (a, 1.0), "b": (b, 3.0), "c": (c, 2.0)})
    model.apply(result, make_strategy(config), 1)
    assert model.plaintext() is None
    payload = model.payload()
    for update in (a, b, c):
        assert update.tobytes() not in payload
    theta1 = _decoder(secret)(payload, D)
    np.testing.assert_allclose(theta1, theta0 + (0.1 * 1 - 0.3 * 3 + 0.2 * 2) / 6, atol=1e-5)


def test_a_site_applies_only_its_own_configured_strategy(secret):
    """The payload's strategy must be the site's own (the step multiplies every bound)."""
    upd = np.full(D, 0.01, np.float32)
    result = _aggregate(secret, 1, dict.fromkeys("abc", (upd, 1.0)))
    for announced in (
        StrategyConfig(name="fedavg", server_lr=1e9),
        StrategyConfig(name="fedavgm", momentum=0.9),
    ):
        model = EncryptedAggregatesModel(np.zeros(D, np.float32), announced)
        model.apply(result, make_strategy(announced), 1)
        with pytest.raises(ProtocolError):
            _decoder(secret)(model.payload(), D)
        # a site configured with that strategy does apply it
        assert np.all(np.isfinite(_decoder(secret, announced)(model.payload(), D)))


def test_a_site_refuses_a_sum_of_its_round_without_its_own_upload(secret):
    """Site c took part in round 3; the server hands it the (genuine) sum of a, b and d."""
    upd = np.full(D, 0.01, np.float32)
    result = _aggregate(secret, 3, dict.fromkeys("abcd", (upd, 1.0)), cohort=("a", "b", "c", "d"))
    config = StrategyConfig(name="fedavg")
    obj = unpack(result.encrypted_sum)
    without_c = pack(dict(obj, uploads=[u for u in obj["uploads"] if u[0] != "c"]))
    model = EncryptedAggregatesModel(np.zeros(D, np.float32), config)
    model.apply(
        type(result)(total_weight=3.0, survivors=("a", "b", "d"), encrypted_sum=without_c),
        make_strategy(config),
        1,
    )
    with pytest.raises(IntegrityError, match="own upload"):
        _decoder(secret, site="c")(model.payload(), D)


def test_a_site_refuses_a_rewritten_or_shortened_history(secret):
    config = StrategyConfig(name="fedavgm")
    model = EncryptedAggregatesModel(np.zeros(D, np.float32), config)
    strategy = make_strategy(config)
    for r in (1, 2):
        upd = np.full(D, 0.01 * r, np.float32)
        model.apply(_aggregate(secret, r, dict.fromkeys("abc", (upd, 1.0))), strategy, r)
    decoder = _decoder(secret, config)
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
    first = _aggregate(secret, 1, dict.fromkeys("abc", (upd, 1.0)))
    model.apply(first, make_strategy(config), 1)
    model.apply(first, make_strategy(config), 2)  # the server adds round 1's sum again
    with pytest.raises(IntegrityError, match="replayed"):
        _decoder(secret)(model.payload(), D)


def _cheating_upload(secret, ctx, site, values):
    """What a cheating roster site sends: any ciphertext, correctly signed by itself."""
    from securefl.he._codec import encrypt_chunks
    from securefl.he._messages import encode_update
    from securefl.he._trust import chunks_digest, update_message
    from securefl.wire import Envelope

    chunks = encrypt_chunks(secret, values)
    message = update_message(
        federation="f",
        round_id=ctx.round,
        site=site,
        key_id=secret.key_id,
        preset=secret.preset.name,
        dimension=D,
        weight=1.0,
        max_weight=MAX_WEIGHT,
        round_digest=ctx.round_digest,
        digest=chunks_digest(chunks),
    )
    payload = encode_update(
        preset=secret.preset.name,
        key_id=secret.key_id,
        weight=1.0,
        dimension=D,
        round_digest=ctx.round_digest,
        chunks=chunks,
        signature=KEYS[site].sign(message),
    )
    return Envelope(
        federation="f",
        round=ctx.round,
        stage="he/update",
        sender=site,
        receiver="server",
        payload=payload,
    )


def test_a_site_refuses_an_infeasible_aggregate_and_applies_nothing(secret):
    """A cheating site's out-of-range values reach the sum; every site stops instead of using it."""
    config = StrategyConfig(name="fedavg")
    model = EncryptedAggregatesModel(np.zeros(D, np.float32), config)
    small = np.full(D, 0.01, np.float32)
    model.apply(_aggregate(secret, 1, dict.fromkeys("abc", (small, 1.0))), make_strategy(config), 1)
    decoder = _decoder(secret)
    theta1 = decoder(model.payload(), D)
    ctx = RoundContext(
        federation="f", round=2, cohort=("a", "b", "c"), dimension=D, max_weight=MAX_WEIGHT
    )
    public = secret.signed_public_context(federation="f", maker="a", signing_key=KEYS["a"])
    server = HEServerMode(public, roster=ROSTER, federation="f").server(ctx)
    for site in "ab":
        server.handle(_mode(secret, site).site(ctx, site).submit(small, 1.0)[0])
    server.handle(_cheating_upload(secret, ctx, "c", np.full(D, 50.0)))  # beyond 3 · clip
    bad = server.result
    assert bad is not None and bad.survivors == ("a", "b", "c")
    model.apply(bad, make_strategy(config), 2)
    with pytest.raises(AbortError, match="honest"):
        decoder(model.payload(), D)
    # the site's model is still round 1's
    np.testing.assert_array_equal(decoder._theta.astype(np.float32), theta1)
