"""Adversarial review of he mode's hash-chained downlink: the server plays the adversary.

A chain head is only worth what it binds: two sites holding different models
must never sign the same round digest, or a fork passes every later check.
"""

import numpy as np
import pytest

from securefl.config import StrategyConfig
from securefl.errors import IntegrityError, SecureFLError
from securefl.hazmat.sign import SigningKey
from securefl.he import CKKS_N4096, HESiteMode, SecretContext
from securefl.runtime.encrypted_model import (
    EncryptedAggregatesModel,
    EncryptedModelDecoder,
    _strategy_fields,
)
from securefl.wire import pack, unpack

D = 8
SITES = ("a", "b", "c")
KEYS = {s: SigningKey.generate() for s in SITES}
ROSTER = {s: k.public_bytes() for s, k in KEYS.items()}
FEDAVG = StrategyConfig(name="fedavg")


@pytest.fixture(scope="module")
def secret():
    return SecretContext.generate(CKKS_N4096)


def _decoder(secret, site):
    mode = HESiteMode(
        secret, site_id=site, signing_key=KEYS[site], max_weight=10.0, processes=False
    )
    return EncryptedModelDecoder(mode, roster=ROSTER, federation="f", strategy=FEDAVG, min_sites=3)


def _whole_history(theta0_wire):
    return pack(
        {"theta0": theta0_wire, "strategy": _strategy_fields(FEDAVG), "start": 0, "aggregates": []}
    )


def test_two_sites_given_different_initial_models_never_share_a_chain_head(secret):
    """The server sends one byte string as θ₀, labelled int64 to site a and float64 to b.

    a starts from the weights 0, 1, 2, 3, ... and b from denormals (≈ 0): two
    different models. The chain hashed θ₀'s bytes without their type, so both
    heads were equal, both sites signed the same round digest, and the fork
    passed every later aggregate unseen. Either a site refuses a θ₀ that is
    not the float32 the server holds, or the heads differ.
    """
    data = np.arange(D, dtype="<i8").tobytes()
    heads, models = {}, {}
    for site, dtype in (("a", "<i8"), ("b", "<f8")):
        decoder = _decoder(secret, site)
        try:
            models[site] = decoder(_whole_history({"dtype": dtype, "n": D, "data": data}), D)
        except SecureFLError:
            continue  # refused: this site trains on nothing the server forged
        heads[site] = decoder.history_digest()
    if len(heads) == 2:
        assert not np.array_equal(models["a"], models["b"])  # the fork is real
        assert heads["a"] != heads["b"], "different models, one chain head: the fork is invisible"


def test_the_honest_initial_model_is_still_accepted(secret):
    """No false alarm: the float32 θ₀ the server holds opens at every site alike."""
    theta0 = np.linspace(-1, 1, D).astype(np.float32)
    payload = EncryptedAggregatesModel(theta0, FEDAVG).payload()
    assert unpack(payload)["theta0"]["dtype"] == "<f4"
    a, b = _decoder(secret, "a"), _decoder(secret, "b")
    np.testing.assert_array_equal(a(payload, D), theta0)
    np.testing.assert_array_equal(b(payload, D), theta0)
    assert a.history_digest() == b.history_digest()


# -- a fork the forked site never sees (documented in threat_models/he.md) -----------

FORK_SITES = ("a", "b", "c", "d")
FORK_KEYS = {s: SigningKey.generate() for s in FORK_SITES}
FORK_ROSTER = {s: k.public_bytes() for s, k in FORK_KEYS.items()}


def _fork_mode(secret, site):
    return HESiteMode(
        secret, site_id=site, signing_key=FORK_KEYS[site], max_weight=10.0, processes=False
    )


def _sum(secret, modes, round_id, sites):
    """The server's sum of one small update per site in ``sites``, each signing an empty digest."""
    from securefl.aggregation import RoundContext
    from securefl.he import HEServerMode

    cohort = tuple(sorted(sites))
    public = secret.signed_public_context(federation="f", maker="a", signing_key=FORK_KEYS["a"])
    ctx = RoundContext(federation="f", round=round_id, cohort=cohort, dimension=D, max_weight=10.0)
    server = HEServerMode(public, roster=FORK_ROSTER, federation="f").server(ctx)
    rng = np.random.default_rng([round_id, *map(ord, cohort)])  # test data, not a security use
    for site in cohort:
        update = rng.uniform(-0.05, 0.05, D).astype(np.float32)
        (env,) = modes[site].site(ctx, site).submit(update, 2.0)
        server.handle(env)
    assert server.result is not None
    return {"sum": server.result.encrypted_sum, "weight": server.result.total_weight}


def test_a_forked_site_kept_out_of_later_rounds_never_notices(secret):
    """What the threat model states: the chain catches a fork only where the forked
    site's view meets the others' (an aggregate summing both, or its own round).

    The server gives d another round-2 sum than c (d's own upload is in it),
    then leaves d out of round 3: d accepts the genuine round-3 sum on top of
    its forked history and ends on another model than c, with no error.
    """
    modes = {s: _fork_mode(secret, s) for s in FORK_SITES}
    first = _sum(secret, modes, 1, "abc")
    honest2, forked2 = _sum(secret, modes, 2, "abc"), _sum(secret, modes, 2, "abd")
    third = _sum(secret, modes, 3, "abc")
    fields = _strategy_fields(FEDAVG)
    theta0 = {"dtype": "<f4", "n": D, "data": np.zeros(D, np.float32).tobytes()}

    def decoder(site):
        return EncryptedModelDecoder(
            modes[site], roster=FORK_ROSTER, federation="f", strategy=FEDAVG, min_sites=3
        )

    c, d = decoder("c"), decoder("d")
    c(pack({"theta0": theta0, "strategy": fields, "start": 0, "aggregates": [first, honest2]}), D)
    d(pack({"theta0": theta0, "strategy": fields, "start": 0, "aggregates": [first, forked2]}), D)
    tail = pack({"theta0": None, "strategy": fields, "start": 2, "aggregates": [third]})
    model_c, model_d = c(tail, D), d(tail, D)  # d raises nothing
    assert c.history_digest() != d.history_digest()
    assert not np.allclose(model_c, model_d)


def test_a_site_whose_upload_missed_the_deadline_stops_at_the_next_round(secret):
    """What the threat model states: an honest server that closed round 2 without d's
    late upload (the others were enough) sends a sum d must refuse, since d signed an
    upload for round 2; d stops, though nobody cheated."""
    from securefl.aggregation import RoundContext

    modes = {s: _fork_mode(secret, s) for s in FORK_SITES}
    first, second = _sum(secret, modes, 1, "abc"), _sum(secret, modes, 2, "abc")
    late = RoundContext(federation="f", round=2, cohort=FORK_SITES, dimension=D, max_weight=10.0)
    modes["d"].site(late, "d").submit(np.zeros(D, np.float32), 1.0)  # sent after the deadline
    d = EncryptedModelDecoder(
        modes["d"], roster=FORK_ROSTER, federation="f", strategy=FEDAVG, min_sites=3
    )
    theta0 = {"dtype": "<f4", "n": D, "data": np.zeros(D, np.float32).tobytes()}
    payload = {"theta0": theta0, "strategy": _strategy_fields(FEDAVG), "start": 0}
    with pytest.raises(IntegrityError, match="own upload"):
        d(pack({**payload, "aggregates": [first, second]}), D)
