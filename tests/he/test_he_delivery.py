"""The HE secret context travels from the keymaker site to each site sealed; the server relays it.

Each test plays an adversary: a server that substitutes a public context, swaps
or re-addresses bundles, a stranger or a non-keymaker site claiming to make
the keys, and the server trying to open what it relays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.config import RoundConfig, StrategyConfig
from securefl.errors import IntegrityError, ProtocolError, WireError
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.sign import SigningKey
from securefl.he import (
    BUNDLE_STAGE,
    KEYS_STAGE,
    KeyMaterial,
    KeyRelay,
    SecretContext,
    SiteKeys,
    make_key_material,
    open_bundle,
)
from securefl.he._context import _proto_fields, _secret_bytes
from securefl.he._delivery import _seal_from_parts, _unseal, seal_bundle
from securefl.modes import server_half
from securefl.params import ParamSpec
from securefl.runtime import messages as m
from securefl.runtime.server import ServerDriver, ServerStage
from securefl.strategy import make_strategy
from securefl.transport.memory import MemoryHub
from securefl.wire import SERVER, Envelope, pack, unpack

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "he_delivery.json").read_text()
)
FED = "fed"
SITES = ("site-a", "site-b", "site-c", "site-d")
MAKER = "site-a"


@dataclass
class Federation:
    """What provisioning gives: identity and exchange keys per site, and a server identity."""

    signing: dict[str, SigningKey]
    exchange: dict[str, KeyPair]
    server_key: SigningKey

    @property
    def identity_keys(self) -> dict[str, bytes]:
        keys = {n: k.public_bytes() for n, k in self.signing.items()}
        return keys | {SERVER: self.server_key.public_bytes()}

    @property
    def exchange_keys(self) -> dict[str, bytes]:
        return {n: k.public_bytes() for n, k in self.exchange.items()}

    def site_keys(self, name: str, keymaker: str = MAKER) -> SiteKeys:
        return SiteKeys(
            name=name,
            federation=FED,
            keymaker=keymaker,
            identity_keys=self.identity_keys,
            exchange_keys=self.exchange_keys,
            signing_key=self.signing[name],
            exchange_key=self.exchange[name],
        )

    def relay(self) -> KeyRelay:
        return KeyRelay(federation=FED, identity_keys=self.identity_keys, keymaker=MAKER)


@pytest.fixture(scope="module")
def fed() -> Federation:
    return Federation(
        signing={n: SigningKey.generate() for n in SITES},
        exchange={n: KeyPair.generate() for n in SITES},
        server_key=SigningKey.generate(),
    )


@pytest.fixture(scope="module")
def made(fed: Federation) -> tuple[SecretContext, KeyMaterial]:
    secret = SecretContext.generate()
    material = make_key_material(
        secret,
        federation=FED,
        maker=MAKER,
        signing_key=fed.signing[MAKER],
        exchange_keys=fed.exchange_keys,
    )
    return secret, material


def _open(fed: Federation, site: str, bundle: bytes, public: bytes) -> SecretContext:
    return open_bundle(
        bundle,
        recipient=site,
        exchange_key=fed.exchange[site],
        federation=FED,
        keymaker=MAKER,
        identity_keys=fed.identity_keys,
        signed_public_context=public,
    )


def _delivery(site: str, public: bytes, bundle: bytes) -> Envelope:
    payload = pack({"public": public, "bundle": bundle})
    return Envelope(
        federation=FED, round=0, stage=BUNDLE_STAGE, sender=SERVER, receiver=site, payload=payload
    )


# -- known answers and must-fail vectors ------------------------------------------


def test_sealing_known_answer() -> None:
    v, want = VECTORS["seal"]["inputs"], VECTORS["seal"]["expected"]
    recipient = KeyPair.from_private_bytes(bytes.fromhex(v["recipient_private"]))
    assert recipient.public_bytes().hex() == want["recipient_public"]
    bundle = _seal_from_parts(
        bytes.fromhex(v["plaintext"]),
        federation=v["federation"],
        maker=v["maker"],
        recipient=v["recipient"],
        recipient_exchange_key=recipient.public_bytes(),
        signed_public_context=bytes.fromhex(v["signed_public_context"]),
        ephemeral=KeyPair.from_private_bytes(bytes.fromhex(v["ephemeral_private"])),
        nonce=bytes.fromhex(v["nonce"]),
    )
    assert bundle.hex() == want["bundle"]
    opened = _unseal(
        bundle,
        recipient=v["recipient"],
        exchange_key=recipient,
        federation=v["federation"],
        keymaker=v["maker"],
        signed_public_context=bytes.fromhex(v["signed_public_context"]),
    )
    assert opened.hex() == v["plaintext"]


@pytest.mark.parametrize("case", VECTORS["must_fail"], ids=lambda c: c["name"])
def test_sealing_must_fail_vectors(case: dict[str, str]) -> None:
    with pytest.raises((IntegrityError, WireError)):
        _unseal(
            bytes.fromhex(case["bundle"]),
            recipient=case["recipient"],
            exchange_key=KeyPair.from_private_bytes(bytes.fromhex(case["recipient_private"])),
            federation=case["federation"],
            keymaker=case["keymaker"],
            signed_public_context=bytes.fromhex(case["signed_public_context"]),
        )


_names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None)
@given(plaintext=st.binary(max_size=300), recipient=_names, at=st.integers(min_value=0))
def test_a_bundle_opens_for_its_recipient_and_no_flipped_byte_opens(
    plaintext: bytes, recipient: str, at: int
) -> None:
    key = KeyPair.generate()
    args = {"federation": FED, "maker": MAKER, "signed_public_context": b"public"}
    if recipient in (MAKER, SERVER):
        recipient += "-x"
    bundle = seal_bundle(
        plaintext, recipient=recipient, recipient_exchange_key=key.public_bytes(), **args
    )
    opens = {"recipient": recipient, "exchange_key": key, "keymaker": MAKER}
    assert _unseal(bundle, federation=FED, signed_public_context=b"public", **opens) == plaintext
    at %= len(bundle)
    flipped = bundle[:at] + bytes([bundle[at] ^ 0x01]) + bundle[at + 1 :]
    with pytest.raises((IntegrityError, WireError)):
        _unseal(flipped, federation=FED, signed_public_context=b"public", **opens)


# -- the real thing: every site gets the maker's key, the server none ---------------


def test_every_other_site_opens_its_bundle_to_the_makers_key(fed, made) -> None:
    secret, material = made
    assert set(material.bundles) == set(SITES) - {MAKER}
    for site, bundle in material.bundles.items():
        opened = _open(fed, site, bundle, material.signed_public_context)
        assert opened.key_id == secret.key_id and opened.maker == MAKER
        # the key really is the same: a sum encrypted at the maker decrypts at the site
        enc = secret.tenseal  # BFV: encrypt at the maker, decrypt at the site
        import tenseal as ts

        vec = ts.bfv_vector(enc, [3, 1, 4])
        back = ts.bfv_vector_from(opened.tenseal, vec.serialize()).decrypt()
        assert back == [3, 1, 4]


def test_server_substituting_its_own_public_context_is_refused(fed, made) -> None:
    """The server makes keys of its own and announces their public context: no site takes it."""
    _, material = made
    own = SecretContext.generate()
    forged_by_server = own.signed_public_context(
        federation=FED, maker=MAKER, signing_key=fed.server_key
    )
    older = SecretContext.generate().signed_public_context(  # the maker's, but another key set
        federation=FED, maker=MAKER, signing_key=fed.signing[MAKER]
    )
    for public in (forged_by_server, older):
        for site in ("site-b", "site-c"):
            keys = fed.site_keys(site)
            with pytest.raises(IntegrityError):
                keys.handle(_delivery(site, public, material.bundles[site]))
    # nor does the relay accept such keys from the keymaker's name
    forged = KeyMaterial(signed_public_context=forged_by_server, bundles=material.bundles)
    with pytest.raises(ProtocolError):
        fed.relay().handle(_keys_env(MAKER, forged.to_bytes()))


def test_server_pairing_a_public_context_with_another_key_sets_bundles_is_refused(fed, made):
    """Both maker-signed, but of two key sets: the recipient checks they hold one key."""
    _, material = made
    other = make_key_material(
        SecretContext.generate(),
        federation=FED,
        maker=MAKER,
        signing_key=fed.signing[MAKER],
        exchange_keys=fed.exchange_keys,
    )
    with pytest.raises(IntegrityError):
        _open(fed, "site-b", other.bundles["site-b"], material.signed_public_context)


def test_server_swapping_two_sites_bundles_is_refused(fed, made) -> None:
    _, material = made
    public = material.signed_public_context
    with pytest.raises(IntegrityError):
        fed.site_keys("site-b").handle(_delivery("site-b", public, material.bundles["site-c"]))
    with pytest.raises(IntegrityError):
        fed.site_keys("site-c").handle(_delivery("site-c", public, material.bundles["site-b"]))


def test_server_readdressing_a_bundle_is_refused(fed, made) -> None:
    """site-b's bundle with its recipient field rewritten to site-c does not open at site-c."""
    _, material = made
    obj = unpack(material.bundles["site-b"])
    obj["recipient"] = "site-c"
    readdressed = pack(obj)
    with pytest.raises(IntegrityError):
        fed.site_keys("site-c").handle(
            _delivery("site-c", material.signed_public_context, readdressed)
        )


def test_a_stranger_claiming_to_be_the_keymaker_is_refused(fed) -> None:
    """Not on the roster: neither the relay nor any site accepts its keys."""
    mallory, mallory_x = SigningKey.generate(), KeyPair.generate()
    fake = make_key_material(
        SecretContext.generate(),
        federation=FED,
        maker=MAKER,  # signed with mallory's key under the keymaker's name
        signing_key=mallory,
        exchange_keys=fed.exchange_keys,
    )
    relay = fed.relay()
    with pytest.raises(ProtocolError):
        relay.handle(_keys_env("mallory", fake.to_bytes()))
    with pytest.raises(ProtocolError):  # under the keymaker's name: the signature fails
        relay.handle(_keys_env(MAKER, fake.to_bytes()))
    assert not relay.ready
    # a cheating server relays them anyway: the site refuses them
    with pytest.raises(IntegrityError):
        fed.site_keys("site-b").handle(
            _delivery("site-b", fake.signed_public_context, fake.bundles["site-b"])
        )
    # and a stranger signing as itself names a maker the site does not pin
    own = make_key_material(
        SecretContext.generate(),
        federation=FED,
        maker="mallory",
        signing_key=mallory,
        exchange_keys=fed.exchange_keys | {"mallory": mallory_x.public_bytes()},
    )
    with pytest.raises(IntegrityError):
        fed.site_keys("site-b").handle(
            _delivery("site-b", own.signed_public_context, own.bundles["site-b"])
        )


def test_a_roster_site_that_is_not_the_keymaker_cannot_make_the_keys(fed) -> None:
    rogue = make_key_material(
        SecretContext.generate(),
        federation=FED,
        maker="site-c",
        signing_key=fed.signing["site-c"],
        exchange_keys=fed.exchange_keys,
    )
    with pytest.raises(ProtocolError):
        fed.relay().handle(_keys_env("site-c", rogue.to_bytes()))
    with pytest.raises(IntegrityError):
        fed.site_keys("site-b").handle(
            _delivery("site-b", rogue.signed_public_context, rogue.bundles["site-b"])
        )


def test_the_server_cannot_open_what_it_relays(fed, made) -> None:
    """Every key the server holds, and every byte it relays, leaves the secret key unread."""
    secret, material = made
    relay = fed.relay()
    relay.handle(_keys_env(MAKER, material.to_bytes()))
    held = material.to_bytes()
    # the server's own identity key, read as an X25519 key, and a key it could make
    seed = fed.server_key.export_private(i_understand_this_exports_a_secret=True)
    server_keys = [KeyPair.from_private_bytes(seed), KeyPair.generate()]
    for site, bundle in material.bundles.items():
        for key in server_keys:
            for name in (site, SERVER):
                with pytest.raises(IntegrityError):
                    _unseal(
                        bundle,
                        recipient=name,
                        exchange_key=key,
                        federation=FED,
                        keymaker=MAKER,
                        signed_public_context=material.signed_public_context,
                    )
    # the secret key's bytes appear nowhere in what the server holds or relays
    secret_key_part = _proto_fields(_secret_bytes(secret.tenseal))[3]
    assert len(secret_key_part) > 1000
    for offset in range(0, len(secret_key_part) - 32, 997):
        assert secret_key_part[offset : offset + 32] not in held
    # and the public context the server builds its half from cannot decrypt
    half = server_half(
        "he",
        identity_keys=fed.identity_keys,
        federation=FED,
        strategy=StrategyConfig(),
        max_weight=10.0,
        min_sites=2,
        he_public_context=relay.signed_public_context,
        he_keymaker=MAKER,
    )
    assert not half.mode.context.tenseal.is_private()


def _hello(site: str, round_id: int = 0) -> Envelope:
    return Envelope(
        federation=FED, round=round_id, stage=m.HELLO, sender=site, receiver=SERVER, payload=b""
    )


def _keys_env(sender: str, payload: bytes) -> Envelope:
    return Envelope(
        federation=FED, round=0, stage=KEYS_STAGE, sender=sender, receiver=SERVER, payload=payload
    )


# -- the pre-round key step in the round driver, over the memory transport -----------


def _driver(fed: Federation) -> ServerDriver:
    relay = fed.relay()
    strategy = StrategyConfig()

    def build(public: bytes):
        return server_half(
            "he",
            identity_keys=fed.identity_keys,
            federation=FED,
            strategy=strategy,
            max_weight=10.0,
            min_sites=3,
            he_public_context=public,
            he_keymaker=MAKER,
        ).mode

    from securefl.runtime.encrypted_model import EncryptedAggregatesModel

    return ServerDriver(
        federation=FED,
        mode=None,
        keys=relay,
        build_mode=build,
        strategy=make_strategy(strategy),
        model=EncryptedAggregatesModel(np.zeros(4, dtype=np.float32), strategy),
        spec=ParamSpec(names=("w",), shapes=((4,),), dtypes=("float32",)),
        rounds=RoundConfig(max_rounds=1, min_sites=3),
        max_weight=10.0,
        expected_sites=SITES[:3],
    )


def _pump(hub: MemoryHub, driver: ServerDriver, server) -> None:
    """Feed the server everything queued for it, sending what it answers."""
    while (env := server.receive(timeout=0)) is not None:
        for out in driver.handle(env):
            server.send(out)


def _drain(conn) -> list[Envelope]:
    got = []
    while (env := conn.receive(timeout=0)) is not None:
        got.append(env)
    return got


def test_round_one_opens_only_after_the_keys_and_every_site_has_its_bundle_first(fed) -> None:
    hub = MemoryHub()
    server = hub.connect(SERVER)
    conns = {n: hub.connect(n) for n in SITES}
    driver = _driver(fed)
    keys = {n: fed.site_keys(n) for n in SITES}
    # everyone but the keymaker says hello: no round, no bundle, even on a deadline
    for site in ("site-b", "site-c"):
        conns[site].send(_hello(site, 0))
    _pump(hub, driver, server)
    assert driver.on_deadline() == []
    assert driver.stage is ServerStage.WAITING_FOR_SITES and driver.mode is None
    assert _drain(conns["site-b"]) == []
    # the keymaker says hello and sends its keys
    conns[MAKER].send(_hello(MAKER, 0))
    out, maker_secret = keys[MAKER].hello()
    assert maker_secret is not None
    for env in out:
        conns[MAKER].send(env)
    _pump(hub, driver, server)
    assert driver.stage is ServerStage.ROUND_OPEN and driver.current_round == 1
    for site in ("site-b", "site-c"):
        got = _drain(conns[site])
        assert [e.stage for e in got[:2]] == [BUNDLE_STAGE, m.ROUND_START]
        assert keys[site].handle(got[0]).key_id == maker_secret.key_id
    assert [e.stage for e in _drain(conns[MAKER])] == [m.ROUND_START]
    # a site that joins later gets its bundle on hello
    conns["site-d"].send(_hello("site-d", 1))
    _pump(hub, driver, server)
    (late,) = _drain(conns["site-d"])
    assert keys["site-d"].handle(late).key_id == maker_secret.key_id


def test_keys_from_a_site_other_than_the_keymaker_never_open_a_round(fed) -> None:
    driver = _driver(fed)
    for site in SITES[:3]:
        driver.handle(_hello(site, 0))
    rogue = make_key_material(
        SecretContext.generate(),
        federation=FED,
        maker="site-c",
        signing_key=fed.signing["site-c"],
        exchange_keys=fed.exchange_keys,
    )
    with pytest.raises(ProtocolError):
        driver.handle(_keys_env("site-c", rogue.to_bytes()))
    assert driver.mode is None and driver.stage is ServerStage.WAITING_FOR_SITES
    assert driver.on_deadline() == []


def test_the_keymaker_cannot_swap_its_keys_once_sites_hold_them(fed, made) -> None:
    _, material = made
    relay = fed.relay()
    relay.handle(_keys_env(MAKER, material.to_bytes()))
    assert relay.handle(_keys_env(MAKER, material.to_bytes())) == []  # a retry
    again = make_key_material(
        SecretContext.generate(),
        federation=FED,
        maker=MAKER,
        signing_key=fed.signing[MAKER],
        exchange_keys=fed.exchange_keys,
    )
    with pytest.raises(ProtocolError):
        relay.handle(_keys_env(MAKER, again.to_bytes()))
    assert relay.signed_public_context == material.signed_public_context


def test_material_missing_a_sites_bundle_is_refused(fed, made) -> None:
    """A keymaker (or a path) dropping one site's bundle would strand it: refused whole."""
    _, material = made
    partial = KeyMaterial(
        signed_public_context=material.signed_public_context,
        bundles={k: v for k, v in material.bundles.items() if k != "site-d"},
    )
    relay = fed.relay()
    with pytest.raises(ProtocolError):
        relay.handle(_keys_env(MAKER, partial.to_bytes()))
    assert not relay.ready
