"""Adversarial review: a server that re-sends a site its he key bundle in the middle of a run.

The site builds its half (its mode, with the rounds it took part in, and the
model decoder, with the hash chain of the history it holds) from the keys.
If every bundle built a new half, a server could replay the genuine bundle
it relayed before round 1 and then hand the site a rewritten history: the
fresh decoder holds nothing to compare with, and the fresh mode no longer
knows which rounds must list the site's own upload.
"""

from pathlib import Path

import numpy as np
import pytest

from securefl.config import StrategyConfig
from securefl.errors import IntegrityError, ProtocolError
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.sign import SigningKey
from securefl.he import BUNDLE_STAGE, SecretContext, make_key_material
from securefl.modes import he_site_keys
from securefl.runtime.encrypted_model import EncryptedAggregatesModel
from securefl.wire import SERVER, Envelope, pack

FED = "fed"
SITES = ("site-a", "site-b", "site-c")
MAKER = "site-a"
D = 6
FEDAVG = StrategyConfig(name="fedavg")
SIGNING = {n: SigningKey.generate() for n in SITES}
EXCHANGE = {n: KeyPair.generate() for n in SITES}
IDENTITY = {n: k.public_bytes() for n, k in SIGNING.items()} | {
    SERVER: SigningKey.generate().public_bytes()
}


def _bundle_for(site: str, secret: SecretContext) -> Envelope:
    material = make_key_material(
        secret,
        federation=FED,
        maker=MAKER,
        signing_key=SIGNING[MAKER],
        exchange_keys={n: k.public_bytes() for n, k in EXCHANGE.items()},
    )
    payload = pack({"public": material.signed_public_context, "bundle": material.bundles[site]})
    return Envelope(
        federation=FED, round=0, stage=BUNDLE_STAGE, sender=SERVER, receiver=site, payload=payload
    )


def _keys(tmp_path: Path, site: str):
    return he_site_keys(
        name=site, signing_key=SIGNING[site], exchange_key=EXCHANGE[site],
        identity_keys=IDENTITY, exchange_keys={n: k.public_bytes() for n, k in EXCHANGE.items()},
        state_dir=tmp_path, federation=FED, strategy=FEDAVG, max_weight=10.0, min_sites=3,
        keymaker=MAKER,
    )  # fmt: skip


@pytest.fixture(scope="module")
def secret():
    return SecretContext.generate()


def test_a_re_sent_key_bundle_does_not_make_a_site_forget_the_history_it_holds(tmp_path, secret):
    keys = _keys(tmp_path, "site-b")
    bundle = _bundle_for("site-b", secret)
    half = keys.handle(bundle)
    honest = EncryptedAggregatesModel(np.zeros(D, np.float32), FEDAVG).payload()
    half.decoder(honest, D)  # the site now holds θ₀ of this federation
    # the server replays the very bundle it relayed before round 1, then rewrites θ₀
    again = keys.handle(bundle)
    rewritten = EncryptedAggregatesModel(np.full(D, 0.5, np.float32), FEDAVG).payload()
    with pytest.raises(IntegrityError, match="rewrote"):
        again.decoder(rewritten, D)


def test_a_site_holding_keys_refuses_another_key_set_mid_run(tmp_path, secret):
    keys = _keys(tmp_path, "site-c")
    keys.handle(_bundle_for("site-c", secret))
    with pytest.raises(ProtocolError, match="keys"):
        keys.handle(_bundle_for("site-c", SecretContext.generate()))
