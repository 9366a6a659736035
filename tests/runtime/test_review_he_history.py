"""Adversarial review of he mode's hash-chained downlink: the server plays the adversary.

A chain head is only worth what it binds: two sites holding different models
must never sign the same round digest, or a fork passes every later check.
"""

import numpy as np
import pytest

from securefl.config import StrategyConfig
from securefl.errors import SecureFLError
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
