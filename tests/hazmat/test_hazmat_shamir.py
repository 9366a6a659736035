"""Shamir over GF(2**521 - 1): known answers, thresholds, corruption."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.errors import ConfigError, IntegrityError, ProtocolError
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.shamir import (
    PRIME,
    SHARE_LEN,
    _split_from_parts,
    combine,
    combine_many,
    lagrange_coefficients,
    split,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "hazmat_shamir.json").read_text())


def test_field_is_the_documented_prime() -> None:
    assert int(VECTORS["prime"]) == PRIME == 2**521 - 1
    assert VECTORS["share_len"] == SHARE_LEN


@pytest.mark.parametrize("v", VECTORS["split"], ids=lambda v: f"t{v['threshold']}")
def test_split_from_parts_known_answers(v: dict) -> None:
    secret = bytes.fromhex(v["secret"])
    shares = _split_from_parts(secret, [int(c) for c in v["coefficients"]], v["share_ids"])
    assert {str(k): s.hex() for k, s in shares.items()} == v["shares"]
    t = v["threshold"]
    first_t = {int(k): bytes.fromhex(s) for k, s in list(v["shares"].items())[:t]}
    assert combine(first_t, threshold=t, secret_len=len(secret)) == secret


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_t_of_n_shares_reconstruct(data: st.DataObject) -> None:
    n = data.draw(st.integers(2, 12))
    t = data.draw(st.integers(2, n))
    ids = data.draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))
    secret = data.draw(st.binary(min_size=32, max_size=32))
    shares = split(secret, threshold=t, share_ids=ids)
    assert all(len(s) == SHARE_LEN for s in shares.values())
    subset = data.draw(st.lists(st.sampled_from(ids), min_size=t, max_size=n, unique=True))
    assert combine({i: shares[i] for i in subset}, threshold=t) == secret


def test_fewer_than_threshold_shares_refused() -> None:
    shares = split(secrets.token_bytes(32), threshold=3, share_ids=[1, 2, 3, 4])
    with pytest.raises(ProtocolError):
        combine({1: shares[1], 2: shares[2]}, threshold=3)
    with pytest.raises(ProtocolError):
        combine_many({"s": shares}, [1, 2], threshold=3)


def test_one_share_below_threshold_fits_every_secret() -> None:
    # With t = 2, one share (x1, y1) is consistent with any guessed secret g:
    # the line g + a*x with a = (y1 - g) / x1 passes through it.
    shares = split(secrets.token_bytes(32), threshold=2, share_ids=[5, 9])
    y1 = shares[5]
    for guess in (bytes(32), b"\xff" * 32, secrets.token_bytes(32)):
        g = int.from_bytes(guess, "big")
        a = (int.from_bytes(y1, "big") - g) * pow(5, -1, PRIME) % PRIME
        assert _split_from_parts(guess, [a], [5, 9])[5] == y1


def test_share_id_zero_and_duplicates_refused() -> None:
    with pytest.raises(ConfigError):
        split(bytes(32), threshold=2, share_ids=[0, 1, 2])
    with pytest.raises(ConfigError):
        split(bytes(32), threshold=2, share_ids=[1, 1, 2])
    with pytest.raises(ConfigError):
        split(bytes(32), threshold=1, share_ids=[1, 2])
    with pytest.raises(ConfigError):
        split(bytes(32), threshold=4, share_ids=[1, 2, 3])


def test_randomly_corrupted_share_is_detected() -> None:
    secret = secrets.token_bytes(32)
    shares = split(secret, threshold=3, share_ids=[1, 2, 3, 4, 5])
    bad = dict(shares)
    bad[2] = (secrets.randbelow(PRIME)).to_bytes(SHARE_LEN, "big")
    with pytest.raises(IntegrityError):
        combine({i: bad[i] for i in (1, 2, 3)}, threshold=3)
    with pytest.raises(IntegrityError):
        combine_many({"s": bad}, [1, 2, 3])


def test_bit_flipped_share_gives_a_wrong_secret_the_callers_check_catches() -> None:
    kp = KeyPair.generate()
    sk = kp.export_private(i_understand_this_exports_a_secret=True)
    shares = split(sk, threshold=3, share_ids=[1, 2, 3])
    y = int.from_bytes(shares[2], "big") ^ 1
    shares[2] = y.to_bytes(SHARE_LEN, "big")
    try:
        recovered = combine(shares, threshold=3)
    except IntegrityError:
        return  # the range tripwire caught it (when sk sits at the edge of the range)
    assert recovered != sk
    assert KeyPair.from_private_bytes(recovered).public_bytes() != kp.public_bytes()


def test_malformed_share_refused() -> None:
    shares = split(secrets.token_bytes(32), threshold=2, share_ids=[1, 2])
    with pytest.raises(IntegrityError):
        combine({1: shares[1], 2: shares[2][:-1]}, threshold=2)
    with pytest.raises(IntegrityError):
        combine({1: shares[1], 2: PRIME.to_bytes(SHARE_LEN, "big")}, threshold=2)


def test_deliberate_shift_passes_combine_and_needs_the_callers_check() -> None:
    # A malicious holder can shift the secret by a chosen delta; only a check
    # against a commitment (the signed public key) catches it.
    kp = KeyPair.generate()
    sk = kp.export_private(i_understand_this_exports_a_secret=True)
    ids = [1, 2, 3]
    shares = split(sk, threshold=3, share_ids=ids)
    lam = lagrange_coefficients(ids)[1]  # coefficient of id 2
    delta = 1 if sk[-1] != 0xFF else PRIME - 1
    y = (int.from_bytes(shares[2], "big") + delta * pow(lam, -1, PRIME)) % PRIME
    shares[2] = y.to_bytes(SHARE_LEN, "big")
    recovered = combine(shares, threshold=3)
    assert recovered != sk
    assert KeyPair.from_private_bytes(recovered).public_bytes() != kp.public_bytes()


def test_lagrange_coefficients_sum_to_one() -> None:
    # sum(lambda_i) interpolates the constant polynomial 1 at x = 0.
    for ids in ([1, 2], [1, 2, 3, 4, 5], [3, 17, 99, 1000]):
        assert sum(lagrange_coefficients(ids)) % PRIME == 1


def test_combine_many_matches_combine() -> None:
    ids = [1, 2, 3, 4, 5, 6]
    secrets_ = {f"site-{i}": secrets.token_bytes(32) for i in range(20)}
    shares = {k: split(s, threshold=4, share_ids=ids) for k, s in secrets_.items()}
    survivors = [2, 3, 5, 6]
    got = combine_many(shares, survivors, threshold=4)
    assert got == secrets_
    for k in list(secrets_)[:3]:
        assert combine({i: shares[k][i] for i in survivors}, threshold=4) == secrets_[k]


def test_combine_many_refuses_a_missing_share() -> None:
    shares = split(bytes(32), threshold=2, share_ids=[1, 2, 3])
    del shares[3]
    with pytest.raises(ProtocolError):
        combine_many({"s": shares}, [1, 3])


def test_other_secret_lengths() -> None:
    for n in (1, 16, 64):
        s = secrets.token_bytes(n)
        shares = split(s, threshold=2, share_ids=[1, 2, 3])
        assert combine({1: shares[1], 3: shares[3]}, threshold=2, secret_len=n) == s
    with pytest.raises(ConfigError):
        split(bytes(65), threshold=2, share_ids=[1, 2])


# -- properties that mutation testing showed unguarded (docs/mutation.md) ---------


def test_shares_are_fresh_per_split_and_never_the_secret() -> None:
    # Random coefficients replaced by zeros would make every share equal the secret.
    secret = secrets.token_bytes(32)
    value = int.from_bytes(secret, "big")
    first = split(secret, threshold=3, share_ids=[1, 2, 3, 4])
    second = split(secret, threshold=3, share_ids=[1, 2, 3, 4])
    for x in first:
        assert first[x] != second[x]
        assert int.from_bytes(first[x], "big") != value


def test_fewer_than_threshold_shares_are_identically_distributed_for_two_secrets() -> None:
    # One share of a t = 2 split is uniform in the field whatever the secret:
    # compare the low bits of share 1 for two very different secrets (chi-square,
    # 8 buckets, 7 degrees of freedom; 60 is far above any chance value, p < 1e-9).
    def histogram(secret: bytes) -> list[int]:
        counts = [0] * 8
        for _ in range(800):
            counts[int.from_bytes(split(secret, threshold=2, share_ids=[1, 2])[1], "big") % 8] += 1
        return counts

    a, b = histogram(bytes(32)), histogram(b"\xff" * 32)
    chi2 = sum((x - y) ** 2 / (x + y) for x, y in zip(a, b, strict=True) if x + y)
    assert chi2 < 60, (a, b)


@pytest.mark.parametrize("bad", [1.0, "2", True])
def test_non_int_share_ids_and_thresholds_refused(bad: object) -> None:
    with pytest.raises(ConfigError):
        split(secrets.token_bytes(32), threshold=2, share_ids=[bad, 3])  # type: ignore[list-item]
    with pytest.raises(ConfigError):
        split(secrets.token_bytes(32), threshold=bad, share_ids=[1, 2, 3])  # type: ignore[arg-type]
    shares = split(secrets.token_bytes(32), threshold=2, share_ids=[1, 2])
    with pytest.raises(ConfigError):
        combine(shares, threshold=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        combine_many({"s": shares}, [1, 2], threshold=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        combine(shares, threshold=2, secret_len=bad)  # type: ignore[arg-type]


def test_share_id_equal_to_the_prime_refused() -> None:
    # x = p is x = 0 in the field: its share would be the secret itself.
    with pytest.raises(ConfigError):
        split(secrets.token_bytes(32), threshold=2, share_ids=[1, PRIME])


def test_threshold_one_is_the_smallest_combine_accepts() -> None:
    secret = secrets.token_bytes(32)
    constant = _split_from_parts(secret, [], [1, 2])
    assert combine({1: constant[1]}, threshold=1) == secret
    assert combine_many({"s": constant}, [1], threshold=1) == {"s": secret}
    for bad in (0, -1):
        with pytest.raises(ConfigError):
            combine(constant, threshold=bad)
        with pytest.raises(ConfigError):
            combine_many({"s": constant}, [1, 2], threshold=bad)


def test_known_answer_coefficients_are_range_checked_each() -> None:
    secret = secrets.token_bytes(32)
    assert _split_from_parts(secret, [0, 0], [1, 2, 3])[1] == bytes(SHARE_LEN - 32) + secret
    for bad in ([PRIME, 1], [1, PRIME], [-1, 1], [True, 1], [1, 1.0]):
        with pytest.raises(ConfigError):
            _split_from_parts(secret, bad, [1, 2, 3])  # type: ignore[arg-type]


def test_non_canonical_share_encodings_refused() -> None:
    # The same field element, encoded longer or as y + p, must not be accepted.
    secret = secrets.token_bytes(32)
    a = (-int.from_bytes(secret, "big")) * pow(1, -1, PRIME) % PRIME  # f(1) = 0
    shares = _split_from_parts(secret, [a], [1, 2])
    assert shares[1] == bytes(SHARE_LEN)
    assert combine(shares, threshold=2) == secret
    for alias in (PRIME.to_bytes(SHARE_LEN, "big"), bytes(SHARE_LEN + 1)):
        with pytest.raises(IntegrityError):
            combine({1: alias, 2: shares[2]}, threshold=2)
        with pytest.raises(IntegrityError):
            combine_many({"s": {1: alias, 2: shares[2]}}, [1, 2])


def test_result_just_beyond_the_secret_length_is_refused() -> None:
    # Shift the reconstruction by 2**256: in range for a 33..36-byte secret, not for 32.
    secret = secrets.token_bytes(32)
    shares = split(secret, threshold=2, share_ids=[1, 2])
    lam = lagrange_coefficients([1, 2])
    y1 = (int.from_bytes(shares[1], "big") + (1 << 256) * pow(lam[0], -1, PRIME)) % PRIME
    shifted = {1: y1.to_bytes(SHARE_LEN, "big"), 2: shares[2]}
    assert combine(shifted, threshold=2, secret_len=33) == (
        int.from_bytes(secret, "big") + (1 << 256)
    ).to_bytes(33, "big")
    with pytest.raises(IntegrityError):
        combine(shifted, threshold=2)
