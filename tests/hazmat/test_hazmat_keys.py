"""X25519 + HKDF: known answers, refusals, domain separation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.errors import ConfigError, IntegrityError
from securefl.hazmat.keys import KeyPair, derive_key, kdf_info, load_public

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "hazmat_keys.json").read_text())
RFC = VECTORS["rfc7748"]


def _alice() -> KeyPair:
    return KeyPair.from_private_bytes(bytes.fromhex(RFC["alice_private"]))


def test_rfc7748_public_keys() -> None:
    assert _alice().public_bytes().hex() == RFC["alice_public"]
    bob = KeyPair.from_private_bytes(bytes.fromhex(RFC["bob_private"]))
    assert bob.public_bytes().hex() == RFC["bob_public"]


@pytest.mark.parametrize("v", VECTORS["derive"], ids=lambda v: f"{v['purpose']}-{v['round_id']}")
def test_derive_key_known_answers(v: dict) -> None:
    info = kdf_info(v["purpose"], v["round_id"], v["a"], v["b"], v["federation"])
    assert info.hex() == v["info"]
    okm = derive_key(_alice(), bytes.fromhex(RFC["bob_public"]), info=info, length=v["length"])
    assert okm.hex() == v["okm"]


def test_both_ends_derive_the_same_key() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    ka = a.derive(b.public_bytes(), info=kdf_info("mask", 1, "a", "b", "f"))
    kb = b.derive(a.public_bytes(), info=kdf_info("mask", 1, "b", "a", "f"))
    assert ka == kb and len(ka) == 32


@pytest.mark.parametrize("point", VECTORS["invalid_public_keys"]["low_order"])
def test_low_order_public_key_refused(point: str) -> None:
    with pytest.raises(IntegrityError):
        derive_key(KeyPair.generate(), bytes.fromhex(point), info=b"x")


@pytest.mark.parametrize("data", VECTORS["invalid_public_keys"]["wrong_length"])
def test_wrong_length_public_key_refused(data: str) -> None:
    with pytest.raises(IntegrityError):
        load_public(bytes.fromhex(data))
    with pytest.raises(IntegrityError):
        derive_key(KeyPair.generate(), bytes.fromhex(data), info=b"x")


def test_integrity_error_is_opaque() -> None:
    with pytest.raises(IntegrityError) as info:
        derive_key(KeyPair.generate(), bytes(32), info=b"x")
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    "args",
    [
        ("share-key", 1, "a", "b", "f"),  # other purpose
        ("mask", 2, "a", "b", "f"),  # other round
        ("mask", 1, "a", "c", "f"),  # other pair
        ("mask", 1, "a", "b", "g"),  # other federation
    ],
)
def test_info_separates_domains(args: tuple) -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    base = a.derive(b.public_bytes(), info=kdf_info("mask", 1, "a", "b", "f"))
    assert a.derive(b.public_bytes(), info=kdf_info(*args)) != base


KDF_ARGS = st.tuples(
    st.text(min_size=1),  # purpose
    st.integers(0, 2**64 - 1),  # round_id
    st.text(min_size=1),  # a
    st.text(min_size=1),  # b
    st.text(min_size=1),  # federation
)


@settings(max_examples=200, deadline=None)
@given(KDF_ARGS, KDF_ARGS)
def test_kdf_info_is_injective_up_to_pair_order(x: tuple, y: tuple) -> None:
    def canon(t: tuple) -> tuple:
        return (t[0], t[1], *sorted((t[2], t[3])), t[4])

    if x[2] == x[3] or y[2] == y[3]:
        return
    try:
        ix, iy = kdf_info(*x), kdf_info(*y)
    except ConfigError:  # lone surrogates are not UTF-8
        return
    assert (ix == iy) == (canon(x) == canon(y))


def test_kdf_info_refuses_bad_fields() -> None:
    with pytest.raises(ConfigError):
        kdf_info("mask", 1, "a", "a", "f")
    with pytest.raises(ConfigError):
        kdf_info("mask", -1, "a", "b", "f")
    with pytest.raises(ConfigError):
        kdf_info("mask", True, "a", "b", "f")
    with pytest.raises(ConfigError):
        kdf_info("", 1, "a", "b", "f")


def test_derive_key_refuses_bad_length() -> None:
    b = KeyPair.generate().public_bytes()
    with pytest.raises(ConfigError):
        derive_key(KeyPair.generate(), b, info=b"x", length=8)


def test_derive_key_accepts_a_raw_pyca_key() -> None:
    sk = X25519PrivateKey.generate()
    peer = KeyPair.generate()
    info = kdf_info("mask", 0, "a", "b", "f")
    assert derive_key(sk, peer.public_bytes(), info=info) == derive_key(
        KeyPair(sk), peer.public_bytes(), info=info
    )


# -- boundaries mutation testing showed unguarded (docs/mutation.md) ---------------


def test_derived_length_defaults_to_32_and_spans_the_hkdf_range() -> None:
    bob = KeyPair.generate()
    info = kdf_info("mask", 1, "a", "b", "f")
    assert len(derive_key(_alice(), bob.public_bytes(), info=info)) == 32
    assert len(_alice().derive(bob.public_bytes(), info=info)) == 32
    assert len(_alice().derive(bob.public_bytes(), info=info, length=16)) == 16
    assert len(derive_key(_alice(), bob.public_bytes(), info=info, length=255 * 32)) == 255 * 32
    for bad in (15, 255 * 32 + 1, 32.0, True):
        with pytest.raises(ConfigError):
            derive_key(_alice(), bob.public_bytes(), info=info, length=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        derive_key(_alice(), bob.public_bytes(), info=b"")


@pytest.mark.parametrize("round_id", [-1, 1.0, True])
def test_kdf_info_refuses_a_round_id_that_is_not_a_non_negative_int(round_id: object) -> None:
    with pytest.raises(ConfigError):
        kdf_info("mask", round_id, "a", "b", "f")  # type: ignore[arg-type]
