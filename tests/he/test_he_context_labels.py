"""A site's secret context is refused unless its bytes hold the secret key its label claims.

The label inside an exported context (``secret``) and what TenSEAL finds in
the bytes must agree: a public context relabelled secret would leave a site
unable to decrypt (or, the other way round, hand a secret key to code that
expects none).
"""

from __future__ import annotations

import pytest

from securefl.errors import SecureFLError
from securefl.he import SecretContext
from securefl.wire import pack, unpack


def test_a_public_context_relabelled_secret_is_refused_as_a_sites_context(
    bfv_secret: SecretContext,
) -> None:
    obj = unpack(bfv_secret.public_context_bytes())
    obj["secret"] = True
    with pytest.raises(SecureFLError):
        SecretContext.from_bytes(pack(obj))


def test_a_secret_context_labelled_public_is_refused_as_a_sites_context(
    bfv_secret: SecretContext,
) -> None:
    obj = unpack(bfv_secret.to_bytes(include_secret_key=True))
    obj["secret"] = False
    with pytest.raises(SecureFLError):
        SecretContext.from_bytes(pack(obj))
    # the honest export still loads, with the same key id
    again = SecretContext.from_bytes(bfv_secret.to_bytes(include_secret_key=True))
    assert again.key_id == bfv_secret.key_id
