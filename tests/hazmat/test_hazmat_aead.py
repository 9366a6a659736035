"""AES-256-GCM: known answers, every must-fail case, opacity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.errors import ConfigError, IntegrityError
from securefl.hazmat.aead import _seal_from_parts, open_, seal, share_ad

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "hazmat_aead.json").read_text())


@pytest.mark.parametrize("v", VECTORS["gcm_spec"] + VECTORS["seal"])
def test_seal_known_answers(v: dict) -> None:
    key, nonce, pt, ad = (bytes.fromhex(v[k]) for k in ("key", "nonce", "plaintext", "ad"))
    if "ad_fields" in v:
        assert share_ad(*v["ad_fields"]) == ad
    sealed = _seal_from_parts(key, nonce, pt, ad)
    assert sealed.hex() == v["sealed"]
    assert open_(key, sealed, associated_data=ad) == pt


@pytest.mark.parametrize("v", VECTORS["must_fail"], ids=lambda v: v["why"])
def test_must_fail_vectors(v: dict) -> None:
    with pytest.raises(IntegrityError) as info:
        open_(
            bytes.fromhex(v["key"]),
            bytes.fromhex(v["sealed"]),
            associated_data=bytes.fromhex(v["ad"]),
        )
    assert info.value.__cause__ is None and info.value.__suppress_context__


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=300), st.binary(max_size=50))
def test_seal_open_round_trip(key: bytes, pt: bytes, ad: bytes) -> None:
    sealed = seal(key, pt, associated_data=ad)
    assert len(sealed) == len(pt) + 28
    assert open_(key, sealed, associated_data=ad) == pt


def test_seal_uses_a_fresh_nonce() -> None:
    key = bytes(32)
    assert seal(key, b"x", associated_data=b"") != seal(key, b"x", associated_data=b"")


def test_seal_refuses_wrong_key_length() -> None:
    with pytest.raises(ConfigError):
        seal(bytes(16), b"x", associated_data=b"")


def test_share_ad_binds_direction_round_and_stage() -> None:
    base = share_ad("f", 1, "a", "b", "shares")
    assert base != share_ad("f", 1, "b", "a", "shares")
    assert base != share_ad("f", 2, "a", "b", "shares")
    assert base != share_ad("f", 1, "a", "b", "unmask")
    assert base != share_ad("g", 1, "a", "b", "shares")
    with pytest.raises(ConfigError):
        share_ad("f", -1, "a", "b", "shares")


def test_known_answer_helper_refuses_what_seal_would_never_produce() -> None:
    # AES-GCM itself takes nonces of 8..128 bytes and raises its own errors on
    # text; only a 12-byte nonce opens again, and callers expect ConfigError.
    key = bytes(32)
    for nonce in (bytes(16), bytes(8)):
        with pytest.raises(ConfigError):
            _seal_from_parts(key, nonce, b"p", b"ad")
    for plaintext, ad in (("p", b"ad"), (b"p", "ad")):
        with pytest.raises(ConfigError):
            _seal_from_parts(key, bytes(12), plaintext, ad)  # type: ignore[arg-type]


@pytest.mark.parametrize("round_id", [-1, 1.0, True])
def test_share_ad_refuses_a_round_id_that_is_not_a_non_negative_int(round_id: object) -> None:
    with pytest.raises(ConfigError):
        share_ad("f", round_id, "a", "b", "mask/share")  # type: ignore[arg-type]


@pytest.mark.parametrize("position", range(4))
@pytest.mark.parametrize("bad", ["", 5, b"a"])
def test_share_ad_names_must_be_non_empty_str(position: int, bad: object) -> None:
    names: list[object] = ["f", "a", "b", "mask/share"]
    names[position] = bad
    federation, sender, receiver, stage = names
    with pytest.raises(ConfigError):
        share_ad(federation, 1, sender, receiver, stage)  # type: ignore[arg-type]
