"""Ed25519: RFC 8032 vectors, domain separation, must-fail cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from securefl.errors import ConfigError, IntegrityError
from securefl.hazmat.sign import SigningKey, signed_message, verify

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "hazmat_sign.json").read_text())


def _field(f: dict) -> bytes | str | int:
    if "bytes" in f:
        return bytes.fromhex(f["bytes"])
    return f["str"] if "str" in f else int(f["int"])


@pytest.mark.parametrize("v", VECTORS["rfc8032"], ids=lambda v: v["public"][:8])
def test_rfc8032_vectors(v: dict) -> None:
    key = SigningKey.from_private_bytes(bytes.fromhex(v["secret"]))
    assert key.public_bytes().hex() == v["public"]
    sig = key.sign(bytes.fromhex(v["message"]))
    assert sig.hex() == v["signature"]
    verify(bytes.fromhex(v["public"]), bytes.fromhex(v["message"]), sig)


@pytest.mark.parametrize("v", VECTORS["signed_messages"], ids=lambda v: v["domain"])
def test_signed_message_known_answers(v: dict) -> None:
    msg = signed_message(v["domain"], *[_field(f) for f in v["fields"]])
    assert msg.hex() == v["message"]
    key = SigningKey.from_private_bytes(bytes.fromhex(VECTORS["rfc8032"][0]["secret"]))
    assert key.sign(msg).hex() == v["signature"]


@pytest.mark.parametrize("v", VECTORS["must_fail"], ids=lambda v: v["why"])
def test_must_fail_vectors(v: dict) -> None:
    with pytest.raises(IntegrityError) as info:
        verify(
            bytes.fromhex(v["public"]), bytes.fromhex(v["message"]), bytes.fromhex(v["signature"])
        )
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_signature_from_another_domain_is_refused() -> None:
    key = SigningKey.generate()
    sig = key.sign(signed_message("secagg/key-advert/v1", "site-a", 3))
    verify(key.public_bytes(), signed_message("secagg/key-advert/v1", "site-a", 3), sig)
    with pytest.raises(IntegrityError):
        verify(key.public_bytes(), signed_message("secagg/consistency/v1", "site-a", 3), sig)


def test_signed_message_is_unambiguous() -> None:
    assert signed_message("d", "ab", "c") != signed_message("d", "a", "bc")
    assert signed_message("d", "1") != signed_message("d", 1)
    assert signed_message("d", b"1") != signed_message("d", "1")
    assert signed_message("d", "x") != signed_message("dx")
    with pytest.raises(ConfigError):
        signed_message("d", True)
    with pytest.raises(ConfigError):
        signed_message("")


# -- the field encoding under every signed message (docs/mutation.md) -------------


def test_int_fields_span_exactly_zero_to_two_to_the_64() -> None:
    from securefl.hazmat._encoding import encode_fields

    low, high = encode_fields(b"ctx", 0), encode_fields(b"ctx", 2**64 - 1)
    assert low.endswith(b"\x03" + (8).to_bytes(4, "big") + bytes(8))
    assert high.endswith(b"\x03" + (8).to_bytes(4, "big") + b"\xff" * 8)
    for bad in (-1, 2**64):
        with pytest.raises(ConfigError):
            encode_fields(b"ctx", bad)


@pytest.mark.parametrize("context", [b"", b"a\x00b", b"\x00"])
def test_context_must_be_non_empty_without_nul(context: bytes) -> None:
    from securefl.hazmat._encoding import encode_fields

    with pytest.raises(ConfigError):
        encode_fields(context, "x")
