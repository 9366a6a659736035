"""Secret-key wrappers (X25519 KeyPair, Ed25519 SigningKey): one contract for both.

Both wrap a pyca key through ``_secret.RawPrivateKey``; each property is
checked on each wrapper, so a wrapper that stops sharing the base (or
overrides part of it) is still held to the same rules.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from securefl.errors import ConfigError
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.sign import SigningKey

WRAPPERS = pytest.mark.parametrize("cls", [KeyPair, SigningKey], ids=lambda c: c.__name__)

Wrapper = type[KeyPair] | type[SigningKey]


@WRAPPERS
def test_refuses_pickling_and_copying(cls: Wrapper) -> None:
    key = cls.generate()
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        key.__getstate__()
    with pytest.raises(TypeError):
        key.__reduce__()
    with pytest.raises(TypeError):
        copy.deepcopy(key)
    with pytest.raises(TypeError):
        copy.copy(key)


@WRAPPERS
def test_export_private_needs_the_flag(cls: Wrapper) -> None:
    key = cls.generate()
    with pytest.raises(ConfigError):
        key.export_private(i_understand_this_exports_a_secret=False)
    raw = key.export_private(i_understand_this_exports_a_secret=True)
    assert cls.from_private_bytes(raw).public_bytes() == key.public_bytes()


@WRAPPERS
@pytest.mark.parametrize(
    "data", [bytes(31), bytes(33), bytearray(32)], ids=["31", "33", "bytearray"]
)
def test_wrong_length_private_key_refused(cls: Wrapper, data: bytes) -> None:
    with pytest.raises(ConfigError, match="private key is 32 bytes"):
        cls.from_private_bytes(data)


@WRAPPERS
def test_repr_does_not_show_the_private_key(cls: Wrapper) -> None:
    key = cls.generate()
    raw = key.export_private(i_understand_this_exports_a_secret=True)
    assert raw.hex() not in repr(key)
    assert key.public_bytes().hex() in repr(key)


@pytest.mark.parametrize(
    ("cls", "other", "match"),
    [
        (KeyPair, Ed25519PrivateKey.generate, "KeyPair wraps an X25519PrivateKey"),
        (SigningKey, X25519PrivateKey.generate, "SigningKey wraps an Ed25519PrivateKey"),
    ],
    ids=["KeyPair", "SigningKey"],
)
def test_wraps_only_its_own_key_type(cls: Wrapper, other: Callable[[], object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        cls(other())


@pytest.mark.parametrize("cls", [KeyPair, SigningKey])
def test_repr_names_the_key_type_and_only_its_public_half(
    cls: type[KeyPair] | type[SigningKey],
) -> None:
    key = cls.generate()
    private = key.export_private(i_understand_this_exports_a_secret=True)
    text = repr(key)
    assert text.startswith(cls.__name__ + "(")
    assert key.public_bytes().hex() in text
    assert private.hex() not in text
