"""A site opens only a key-bundle message of exactly the shape the relay sends.

The bundle message comes from the server, which the he mode does not trust
with the key: a message with a field this version does not know (or one
missing) is refused as a whole, even when the bundle in it would open, rather
than read in part.
"""

from __future__ import annotations

import pytest

from securefl.errors import WireError
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.sign import SigningKey
from securefl.he import BUNDLE_STAGE, SecretContext, SiteKeys, make_key_material
from securefl.wire import SERVER, Envelope, pack

FED = "fed"
SITES = ("site-a", "site-b", "site-c")
MAKER = "site-a"
SIGNING = {n: SigningKey.generate() for n in SITES}
EXCHANGE = {n: KeyPair.generate() for n in SITES}


def _site_keys(name: str) -> SiteKeys:
    return SiteKeys(
        name=name,
        federation=FED,
        keymaker=MAKER,
        identity_keys={n: k.public_bytes() for n, k in SIGNING.items()},
        exchange_keys={n: k.public_bytes() for n, k in EXCHANGE.items()},
        signing_key=SIGNING[name],
        exchange_key=EXCHANGE[name],
    )


@pytest.fixture(scope="module")
def fields() -> dict[str, bytes]:
    material = make_key_material(
        SecretContext.generate(),
        federation=FED,
        maker=MAKER,
        signing_key=SIGNING[MAKER],
        exchange_keys={n: k.public_bytes() for n, k in EXCHANGE.items()},
    )
    return {"public": material.signed_public_context, "bundle": material.bundles["site-b"]}


def _delivery(obj: object) -> Envelope:
    return Envelope(
        federation=FED,
        round=0,
        stage=BUNDLE_STAGE,
        sender=SERVER,
        receiver="site-b",
        payload=pack(obj),
    )


def test_the_exact_message_opens(fields: dict[str, bytes]) -> None:
    assert isinstance(_site_keys("site-b").handle(_delivery(fields)), SecretContext)


@pytest.mark.parametrize("change", ["extra", "no-bundle", "no-public", "list"])
def test_a_bundle_message_of_another_shape_is_refused_whole(
    fields: dict[str, bytes], change: str
) -> None:
    obj: object
    if change == "extra":
        obj = {**fields, "note": b"from the server"}
    elif change == "list":
        obj = [fields["public"], fields["bundle"]]
    else:
        obj = {k: v for k, v in fields.items() if k != change.removeprefix("no-")}
    with pytest.raises(WireError):
        _site_keys("site-b").handle(_delivery(obj))
