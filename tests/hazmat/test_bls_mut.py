"""BLS inputs of the wrong type: refused as untrusted data, never half-parsed.

Signatures and public keys arrive from the network (a site's consistency
signature, the server's aggregate) and from the roster. Whatever their
type, the checks of :mod:`securefl.hazmat.bls` must refuse anything that is
not exactly ``bytes`` of the right length with :class:`IntegrityError`, the
error the protocol turns into an abort: a buffer of another type (which
blspy would parse) or an object of the right length but not bytes (on which
blspy raises its own ``TypeError``) must not get past the check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from securefl.errors import IntegrityError
from securefl.hazmat import bls

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "bls_multisig.json").read_text())
SITE = VECTORS["derived"]["sites"][0]
MESSAGE = bytes.fromhex(VECTORS["derived"]["message"])
PUBLIC = bytes.fromhex(SITE["bls_public"])
SIGNATURE = bytes.fromhex(SITE["signature"])
PROOF = bytes.fromhex(SITE["proof_of_possession"])


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Parsed public keys are cached per process; each test parses its own."""
    bls._public_point.cache_clear()
    yield
    bls._public_point.cache_clear()


_NOT_BYTES_IDS = ["bytearray", "memoryview", "str", "list"]


def _not_bytes(valid: bytes) -> list[Any]:
    """Objects as long as ``valid`` (or holding its bytes) that are not ``bytes``."""
    return [bytearray(valid), memoryview(valid), "a" * len(valid), list(valid)]


def test_the_valid_inputs_verify() -> None:
    """The baseline the refusals below depart from."""
    bls.verify_one(PUBLIC, MESSAGE, SIGNATURE)
    bls.check_possession(PUBLIC, PROOF)
    bls.verify_aggregate([PUBLIC], MESSAGE, SIGNATURE)


@pytest.mark.parametrize("bad", _not_bytes(SIGNATURE), ids=_NOT_BYTES_IDS)
def test_a_signature_that_is_not_bytes_is_refused_everywhere(bad: Any) -> None:
    with pytest.raises(IntegrityError):
        bls.verify_one(PUBLIC, MESSAGE, bad)
    with pytest.raises(IntegrityError):
        bls.verify_aggregate([PUBLIC], MESSAGE, bad)
    with pytest.raises(IntegrityError):
        bls.aggregate([SIGNATURE, bad])


@pytest.mark.parametrize("bad", _not_bytes(PROOF), ids=_NOT_BYTES_IDS)
def test_a_proof_of_possession_that_is_not_bytes_is_refused(bad: Any) -> None:
    with pytest.raises(IntegrityError):
        bls.check_possession(PUBLIC, bad)


@pytest.mark.parametrize("cut", [1, 47, 95, 97])
def test_a_signature_of_the_wrong_length_is_refused(cut: int) -> None:
    """Truncated or extended encodings of a valid signature, and short garbage."""
    for bad in ((SIGNATURE * 2)[:cut], bytes(cut)):
        with pytest.raises(IntegrityError):
            bls.verify_one(PUBLIC, MESSAGE, bad)
        with pytest.raises(IntegrityError):
            bls.aggregate([bad])


@pytest.mark.parametrize(
    "bad", [memoryview(PUBLIC), "a" * 48, tuple(PUBLIC)], ids=["memoryview", "str", "tuple"]
)
def test_a_public_key_that_is_not_bytes_is_refused_everywhere(bad: Any) -> None:
    """A key that blspy would parse from any buffer (or fail on with its own error) is refused.

    (The parsed keys are cached, so only hashable objects reach the check; an
    unhashable one fails at the cache with ``TypeError``.)
    """
    with pytest.raises(IntegrityError):
        bls.verify_one(bad, MESSAGE, SIGNATURE)
    with pytest.raises(IntegrityError):
        bls.check_possession(bad, PROOF)
    with pytest.raises(IntegrityError):
        bls.verify_aggregate([bad], MESSAGE, SIGNATURE)
