"""Shamir secret sharing over GF(2**521 - 1) for dropout recovery in SecAgg+.

.. warning::

   This is hazmat: easy-to-misuse primitives. Shamir shares are not
   authenticated: a malicious share holder can shift the reconstructed secret
   by a value of its choice. Callers must check every reconstructed secret
   against a commitment (e.g. the reconstructed X25519 key must match the
   signed key advert) and must send shares only under AEAD. Protocol code
   should use the safe API in :mod:`securefl.secagg`.

Field: the Mersenne prime p = 2**521 - 1 (M521), comfortably larger than any
secret of up to 64 bytes. A secret is the constant term of a random polynomial
of degree ``threshold - 1`` whose other coefficients come from :mod:`secrets`;
the share for id ``x`` (1..n, never 0: f(0) *is* the secret) is ``f(x)``,
encoded as :data:`SHARE_LEN` big-endian bytes.

Because p is about 2**265 times larger than the 32-byte secret space, a share
replaced by a random value reconstructs to a value outside the secret range
with overwhelming probability, and :func:`combine` raises
:class:`IntegrityError`. That check is a tripwire, not a MAC: a flipped low
bit (Lagrange coefficients for small ids are small integers) or a deliberate
shift keeps the result in range and returns a *wrong* secret, hence the
commitment check above.

Speed: the server reconstructs many secrets from the same survivor ids, so
:func:`lagrange_coefficients` is computed once (one modular inversion, by
batching) and :func:`combine_many` does only ``len(ids)`` multiplications and
one reduction per secret.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from securefl.errors import ConfigError, IntegrityError, ProtocolError

__all__ = [
    "MAX_SECRET_LEN",
    "PRIME",
    "SHARE_LEN",
    "combine",
    "combine_many",
    "lagrange_coefficients",
    "split",
]

PRIME = (1 << 521) - 1
"""The field modulus, the Mersenne prime 2**521 - 1."""

SHARE_LEN = 66
"""Bytes per encoded share: ceil(521 / 8)."""

MAX_SECRET_LEN = 64
"""Longest secret accepted: 512 bits, below the 521-bit field."""

K = TypeVar("K", bound=Hashable)


def _check_ids(share_ids: Sequence[int]) -> list[int]:
    ids = list(share_ids)
    for x in ids:
        if isinstance(x, bool) or not isinstance(x, int):
            raise ConfigError("share ids must be ints")
        if not 1 <= x < PRIME:
            raise ConfigError("share ids must be in 1..n (0 would reveal the secret)")
    if len(set(ids)) != len(ids):
        raise ConfigError("share ids must be distinct")
    return ids


def _check_secret_len(secret_len: int) -> None:
    if isinstance(secret_len, bool) or not isinstance(secret_len, int):
        raise ConfigError("secret_len must be an int")
    if not 1 <= secret_len <= MAX_SECRET_LEN:
        raise ConfigError(f"secret_len must be in 1..{MAX_SECRET_LEN}")


def _encode(y: int) -> bytes:
    return y.to_bytes(SHARE_LEN, "big")


def _decode(share: bytes) -> int:
    if not isinstance(share, bytes) or len(share) != SHARE_LEN:
        raise IntegrityError("malformed share")
    y = int.from_bytes(share, "big")
    if y >= PRIME:
        raise IntegrityError("malformed share")
    return y


def _split_from_parts(
    secret: bytes, coefficients: Sequence[int], share_ids: Sequence[int]
) -> dict[int, bytes]:
    """Shares of ``secret`` for a given polynomial. Known-answer tests only.

    ``coefficients`` are a_1..a_{t-1} (the secret is a_0); their number fixes
    the threshold ``t = len(coefficients) + 1``.
    """
    if not isinstance(secret, bytes):
        raise ConfigError("secret must be bytes")
    _check_secret_len(len(secret))
    ids = _check_ids(share_ids)
    coeffs = [int.from_bytes(secret, "big"), *coefficients]
    for c in coeffs[1:]:
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < PRIME:
            raise ConfigError("coefficients must be ints in [0, p)")
    if len(ids) < len(coeffs):
        raise ConfigError("fewer share ids than the threshold: the secret could never return")
    shares: dict[int, bytes] = {}
    for x in ids:
        y = 0
        for c in reversed(coeffs):  # Horner
            y = (y * x + c) % PRIME
        shares[x] = _encode(y)
    return shares


def split(secret: bytes, *, threshold: int, share_ids: Sequence[int]) -> dict[int, bytes]:
    """Split ``secret`` so that any ``threshold`` of the shares recover it and fewer reveal nothing.

    ``threshold`` must be at least 2 (with 1, every share *is* the secret) and at
    most ``len(share_ids)``.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise ConfigError("threshold must be an int")
    if threshold < 2:
        raise ConfigError("threshold must be at least 2: with 1 every share is the secret")
    coefficients = [_secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return _split_from_parts(secret, coefficients, share_ids)


def lagrange_coefficients(ids: Sequence[int]) -> list[int]:
    """Lagrange basis values at x = 0 for the points ``ids``, in the order given.

    lambda_i = prod_{j != i} x_j / (x_j - x_i) mod p. The denominators are
    inverted together (Montgomery's trick): one modular inversion in total.
    """
    xs = _check_ids(ids)
    if not xs:
        raise ConfigError("need at least one id")
    total = 1
    for x in xs:
        total = total * x % PRIME
    dens = []
    for i, xi in enumerate(xs):
        d = xi
        for j, xj in enumerate(xs):
            if j != i:
                d = d * (xj - xi) % PRIME
        dens.append(d)
    # Batch inversion: prefix products, one pow(..., -1), then walk back.
    prefix = [1] * (len(dens) + 1)
    for i, d in enumerate(dens):
        prefix[i + 1] = prefix[i] * d % PRIME
    inv = pow(prefix[-1], -1, PRIME)
    inv_dens = [0] * len(dens)
    for i in range(len(dens) - 1, -1, -1):
        inv_dens[i] = inv * prefix[i] % PRIME
        inv = inv * dens[i] % PRIME
    return [total * v % PRIME for v in inv_dens]


def _interpolate(coeffs: Sequence[int], ys: Sequence[int], secret_len: int) -> bytes:
    acc = 0
    for c, y in zip(coeffs, ys, strict=True):
        acc += c * y
    value = acc % PRIME
    if value >> (8 * secret_len):
        raise IntegrityError("shares are inconsistent")
    return value.to_bytes(secret_len, "big")


def combine(shares: Mapping[int, bytes], *, threshold: int, secret_len: int = 32) -> bytes:
    """Reconstruct a secret from at least ``threshold`` shares (all given shares are used).

    Fewer than ``threshold`` shares raise :class:`ProtocolError`. A malformed
    share, or shares that interpolate to a value outside ``secret_len`` bytes,
    raise :class:`IntegrityError`. Check the result against a commitment anyway.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ConfigError("threshold must be a positive int")
    _check_secret_len(secret_len)
    if len(shares) < threshold:
        raise ProtocolError(f"{len(shares)} shares, need at least {threshold}")
    ids = list(shares)
    coeffs = lagrange_coefficients(ids)
    return _interpolate(coeffs, [_decode(shares[x]) for x in ids], secret_len)


def combine_many(
    shares_by_secret: Mapping[K, Mapping[int, bytes]],
    ids: Sequence[int],
    *,
    threshold: int | None = None,
    secret_len: int = 32,
) -> dict[K, bytes]:
    """Reconstruct many secrets from shares held by the same ``ids``.

    The Lagrange coefficients are computed once for ``ids`` and reused; every
    secret must have a share from each id in ``ids`` (extra shares are
    ignored). Pass ``threshold`` so too few ids raise :class:`ProtocolError`;
    without it the caller vouches that ``len(ids)`` reaches the threshold.
    """
    _check_secret_len(secret_len)
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigError("threshold must be a positive int")
        if len(ids) < threshold:
            raise ProtocolError(f"{len(ids)} shares, need at least {threshold}")
    id_list = list(ids)
    coeffs = lagrange_coefficients(id_list)
    out: dict[K, bytes] = {}
    for key, shares in shares_by_secret.items():
        try:
            ys = [_decode(shares[x]) for x in id_list]
        except KeyError:
            raise ProtocolError("a secret lacks a share from one of the given ids") from None
        out[key] = _interpolate(coeffs, ys, secret_len)
    return out
