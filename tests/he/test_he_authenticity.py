"""HE contexts and uploads are authenticated; sites refuse aggregates honest inputs cannot make.

Each test plays one adversary: a hostile network that flips bytes or
injects ciphertexts, a cheating site that signs whatever it likes, a cheating
server that swaps contexts or tampers with the aggregate it hands back.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from conftest import FEDERATION, MAX_WEIGHT, Kit, make_kit
from test_he_aggregate import signed_update

from securefl.aggregation.base import RoundContext
from securefl.errors import AbortError, ConfigError, IntegrityError, SecureFLError, WireError
from securefl.hazmat.sign import SigningKey, signed_message
from securefl.he import (
    HEServerMode,
    PublicContext,
    SecretContext,
    decrypt_aggregate,
    open_aggregate,
)
from securefl.he._codec import decrypt_chunks, encrypt_chunks, load_chunks
from securefl.he._fixed_point import quantize
from securefl.he._trust import PUBLIC_CONTEXT_DOMAIN, sign_context
from securefl.wire import SERVER, Envelope, pack, unpack

D = 300  # one chunk in every preset
COHORT = ("a", "b", "c")


def _rc(round_id: int = 4, cohort: tuple[str, ...] = COHORT) -> RoundContext:
    return RoundContext(
        federation=FEDERATION, round=round_id, cohort=cohort, dimension=D, max_weight=MAX_WEIGHT
    )


def _xs() -> dict[str, Any]:
    gen = np.random.default_rng(5)  # test data only
    return {k: (gen.normal(size=D) * 0.01).astype(np.float32) for k in "abcd"}


def _honest(kit: Kit, rc: RoundContext, sites: str = "abc") -> dict[str, Envelope]:
    xs = _xs()
    return {s: kit.site_mode(s).site(rc, s).submit(xs[s], 50.0)[0] for s in sites}


def _open(kit: Kit, blob: bytes) -> Any:
    return open_aggregate(
        kit.secret, blob, D, roster=kit.roster, federation=FEDERATION, max_weight=MAX_WEIGHT
    )


def _values(kit: Kit, values: Any) -> Any:
    """What a site would encrypt for these normalized values (quantized for BFV)."""
    secret = kit.secret
    if secret.preset.scheme == "bfv":
        return quantize(values, clip=secret.clip, levels=secret.preset.quant_levels)
    return np.asarray(values, dtype=np.float64)


# -- contexts -------------------------------------------------------------------


def _flips(data: bytes, every: int = 1) -> Any:
    for pos in range(0, len(data), every):
        for bit in (0x01, 0x80):
            bad = bytearray(data)
            bad[pos] ^= bit
            yield bytes(bad)


def test_every_single_byte_flip_of_the_signed_public_context_is_refused(any_kit: Kit) -> None:
    signed = any_kit.signed_public
    refused = 0
    for bad in _flips(signed):
        with pytest.raises(SecureFLError):
            HEServerMode(bad, roster=any_kit.roster, federation=FEDERATION)
        refused += 1
    assert refused == 2 * len(signed)
    HEServerMode(signed, roster=any_kit.roster, federation=FEDERATION)  # the genuine one loads


def test_byte_flips_of_the_signed_secret_context_are_refused(bfv_kit: Kit) -> None:
    signed = bfv_kit.signed_secret
    header = signed[:400]  # every field but the bulk of the key, then a sample of the key
    for bad in list(_flips(header)) + list(_flips(signed, every=max(1, len(signed) // 300))):
        with pytest.raises(SecureFLError):
            SecretContext.from_signed(bad, roster=bfv_kit.roster, federation=FEDERATION)


def test_a_context_not_made_by_a_roster_site_is_refused(bfv_kit: Kit) -> None:
    """A server that swaps the context for one it made (and can decrypt)."""
    server_key = SigningKey.generate()
    roster = dict(bfv_kit.roster, **{SERVER: server_key.public_bytes()})
    own = SecretContext.generate(bfv_kit.secret.preset, clip=bfv_kit.secret.clip)
    with pytest.raises(ConfigError):  # the API will not even sign as the server
        own.signed_secret_context(
            federation=FEDERATION, maker=SERVER, signing_key=server_key, include_secret_key=True
        )
    inner = own.to_bytes(include_secret_key=True)
    forged_by_server = _wrap("secret", inner, SERVER, server_key)
    forged_as_site_a = _wrap("secret", inner, "a", server_key)
    for forged in (forged_by_server, forged_as_site_a):
        with pytest.raises(IntegrityError):
            SecretContext.from_signed(forged, roster=roster, federation=FEDERATION)
    public = _wrap("public", own.public_context_bytes(), "a", server_key)
    with pytest.raises(IntegrityError):
        HEServerMode(public, roster=roster, federation=FEDERATION)
    # and the genuine kit of another federation is not this one's
    with pytest.raises(IntegrityError):
        SecretContext.from_signed(bfv_kit.signed_secret, roster=bfv_kit.roster, federation="g")


def test_a_context_made_by_another_roster_site_than_the_designated_maker_is_refused(
    bfv_kit: Kit,
) -> None:
    """A cheating roster site (b) makes its own keys and signs them as itself."""
    own = SecretContext.generate(bfv_kit.secret.preset, clip=bfv_kit.secret.clip)
    by_b = own.signed_secret_context(
        federation=FEDERATION, maker="b", signing_key=bfv_kit.keys["b"], include_secret_key=True
    )
    public_by_b = own.signed_public_context(
        federation=FEDERATION, maker="b", signing_key=bfv_kit.keys["b"]
    )
    pinned = {"roster": bfv_kit.roster, "federation": FEDERATION, "maker": "a"}
    assert SecretContext.from_signed(by_b, roster=bfv_kit.roster, federation=FEDERATION)
    with pytest.raises(IntegrityError):
        SecretContext.from_signed(by_b, **pinned)
    with pytest.raises(IntegrityError):
        HEServerMode(public_by_b, **pinned)
    assert (
        SecretContext.from_signed(bfv_kit.signed_secret, **pinned).key_id == bfv_kit.secret.key_id
    )
    assert HEServerMode(bfv_kit.signed_public, **pinned).context.key_id == bfv_kit.secret.key_id


def _wrap(kind: str, inner: bytes, maker: str, key: SigningKey) -> bytes:
    """A signed context built by hand, as a forger would (sign_context refuses the server)."""
    domain = PUBLIC_CONTEXT_DOMAIN if kind == "public" else "he/secret-context/v1"
    return pack(
        {
            "v": 1,
            "format": "securefl-he-signed-context",
            "kind": kind,
            "federation": FEDERATION,
            "maker": maker,
            "context": inner,
            "signature": key.sign(signed_message(domain, FEDERATION, maker, inner)),
        }
    )


@pytest.mark.parametrize(
    "change",
    [
        {"clip": -65536.0},
        {"clip": 0.0},
        {"clip": float("nan")},
        {"clip": float("inf")},
        {"clip": 1e9},  # CKKS: sums of max_sites such values could wrap
        {"key_id": b"\x00" * 15},
        {"key_id": 7},
        {"preset": "bfv-n9999"},
        {"secret": 1},
    ],
)
def test_context_parameters_are_validated_on_load_even_when_signed(
    ckks_kit: Kit, change: dict[str, Any]
) -> None:
    """A maker's bug (or a compromised maker) still cannot hand out absurd parameters."""
    obj = unpack(ckks_kit.secret.public_context_bytes())
    tampered = pack({**obj, **change})
    signed = sign_context(
        tampered, kind="public", federation=FEDERATION, maker="a", signing_key=ckks_kit.keys["a"]
    )
    with pytest.raises((ConfigError, WireError)):
        PublicContext.from_signed(signed, roster=ckks_kit.roster, federation=FEDERATION)


def test_a_secret_context_whose_key_id_is_not_its_keys_is_refused(bfv_kit: Kit) -> None:
    obj = unpack(bfv_kit.secret.to_bytes(include_secret_key=True))
    with pytest.raises(IntegrityError):
        SecretContext.from_bytes(pack(dict(obj, key_id=bytes(16))))


# -- uploads at the server ---------------------------------------------------------


def _loadable_flip(kit: Kit, chunk: bytes, n: int, start: int) -> bytes:
    """A one-byte flip of ``chunk`` that TenSEAL still loads (so only a signature can tell)."""
    public = kit.secret.public()
    for pos in range(start, len(chunk)):
        bad = bytearray(chunk)
        bad[pos] ^= 0x10
        try:
            load_chunks(public, [bytes(bad)], n)
        except WireError:
            continue
        return bytes(bad)
    raise AssertionError("no loadable flip found")


def test_a_flipped_byte_in_a_chunk_on_the_way_is_refused_by_the_server(any_kit: Kit) -> None:
    kit, rc = any_kit, _rc(cohort=("a", "b", "c", "d"))
    envs = _honest(kit, rc, "abcd")
    obj = unpack(envs["c"].payload)
    flipped = _loadable_flip(kit, obj["chunks"][0], D, len(obj["chunks"][0]) // 2)
    tampered = dataclasses.replace(envs["c"], payload=pack(dict(obj, chunks=[flipped])))
    server = kit.server_mode().server(rc)
    for env in (envs["a"], envs["b"], tampered, envs["d"]):
        server.handle(env)
    assert isinstance(server.rejected["c"], IntegrityError)
    assert server.result is not None and server.result.survivors == ("a", "b", "d")


def test_an_injected_chunk_under_another_key_with_the_right_label_is_refused(
    any_kit: Kit,
) -> None:
    """A hostile network replaces site c's chunk by one under another key, labelled right."""
    kit, rc = any_kit, _rc()
    envs = _honest(kit, rc)
    other = SecretContext.generate(kit.secret.preset, clip=kit.secret.clip)
    obj = unpack(envs["c"].payload)
    foreign = encrypt_chunks(other, _values(kit, np.full(D, 0.5 * kit.secret.clip)))
    injected = dataclasses.replace(envs["c"], payload=pack(dict(obj, chunks=foreign)))
    replayed_as_b = dataclasses.replace(envs["a"], sender="b")
    server = kit.server_mode().server(rc)
    for env in (envs["a"], replayed_as_b, injected):
        server.handle(env)
    assert isinstance(server.rejected["b"], IntegrityError)
    assert isinstance(server.rejected["c"], IntegrityError)


def test_an_upload_replayed_into_another_round_is_refused(ckks_kit: Kit) -> None:
    old = _honest(ckks_kit, _rc(round_id=4), "a")["a"]
    rc = _rc(round_id=5)
    server = ckks_kit.server_mode().server(rc)
    server.handle(dataclasses.replace(old, round=5))
    assert isinstance(server.rejected["a"], IntegrityError)


# -- what sites decrypt ------------------------------------------------------------


def _aggregate_with_cheater(kit: Kit, chunks: list[bytes]) -> Any:
    """a and b honest; c signs and sends ``chunks`` (the server cannot tell)."""
    rc = _rc()
    envs = _honest(kit, rc, "ab")
    server = kit.server_mode().server(rc)
    for env in (envs["a"], envs["b"], signed_update(kit, "c", rc, chunks, weight=50.0)):
        server.handle(env)
    assert "c" not in server.rejected  # nothing at the server can see this
    res = server.result
    assert res is not None and res.survivors == COHORT
    return res


def test_sites_refuse_a_sum_holding_a_chunk_under_another_key(any_kit: Kit) -> None:
    """The reported attack: a cheating site's chunk under another key, labelled right."""
    other = SecretContext.generate(any_kit.secret.preset, clip=any_kit.secret.clip)
    res = _aggregate_with_cheater(
        any_kit, encrypt_chunks(other, _values(any_kit, np.full(D, 0.001)))
    )
    with pytest.raises(AbortError, match="cannot come from honest inputs"):
        decrypt_aggregate(
            any_kit.secret,
            res.encrypted_sum,
            res.total_weight,
            D,
            roster=any_kit.roster,
            federation=FEDERATION,
            max_weight=MAX_WEIGHT,
        )


def test_sites_refuse_a_sum_holding_values_beyond_the_clip(any_kit: Kit) -> None:
    """A cheating site encrypts far more than clip (it holds the key, so it can)."""
    secret = any_kit.secret
    if secret.preset.scheme == "bfv":
        levels = secret.preset.quant_levels
        assert secret.preset.plain_modulus is not None
        values = np.full(D, 4 * levels, dtype=np.int64)  # beyond what any three sites can sum
    else:
        values = np.full(D, 4 * secret.clip)
    res = _aggregate_with_cheater(any_kit, encrypt_chunks(secret, values))
    with pytest.raises(AbortError, match="cannot come from honest inputs"):
        _open(any_kit, res.encrypted_sum)
    # an honest aggregate of the same shape opens
    honest = _aggregate_with_cheater(any_kit, encrypt_chunks(secret, _values(any_kit, np.zeros(D))))
    assert _open(any_kit, honest.encrypted_sum).sites == COHORT


def _within_bounds(kit: Kit, chunk: bytes, summands: int) -> bool:
    """Whether a decrypted chunk lies where ``summands`` honest clipped inputs can reach."""
    secret = kit.secret
    raw = decrypt_chunks(secret, [chunk], D)
    if secret.preset.scheme == "bfv":
        t = secret.preset.plain_modulus
        assert t is not None
        centred = np.where(raw > t // 2, raw - t, raw)
        return bool(np.max(np.abs(centred)) <= summands * secret.preset.quant_levels)
    return bool(np.max(np.abs(raw)) <= summands * (secret.clip + 2.0**-20))


def test_sites_refuse_a_sum_the_server_flipped_out_of_bounds(any_kit: Kit) -> None:
    """Every loadable one-byte flip of the aggregate's sum is refused unless it stays in bounds.

    What the check cannot do is shown too: a flip that moves the sum but keeps
    it where honest inputs could reach is accepted (the sum is the server's
    word, threat_models/he.md).
    """
    kit, rc = any_kit, _rc()
    server = kit.server_mode().server(rc)
    for env in _honest(kit, rc).values():
        server.handle(env)
    assert server.result is not None
    obj = unpack(server.result.encrypted_sum)
    assert _open(kit, pack(obj)).sites == COHORT
    chunk = obj["chunks"][0]
    refused = 0
    for start in range(len(chunk) // 4, len(chunk), len(chunk) // 12):
        try:
            flipped = _loadable_flip(kit, chunk, D, start)
        except AssertionError:
            continue
        try:
            _open(kit, pack(dict(obj, chunks=[flipped])))
        except AbortError:
            assert not _within_bounds(kit, flipped, len(COHORT))
            refused += 1
        else:
            assert _within_bounds(kit, flipped, len(COHORT))
    assert refused > 0


@pytest.mark.parametrize("field", ["weight", "weight_scale", "round", "site", "total"])
def test_sites_refuse_numbers_the_server_changed_beside_the_sum(ckks_kit: Kit, field: str) -> None:
    rc = _rc()
    server = ckks_kit.server_mode().server(rc)
    for env in _honest(ckks_kit, rc).values():
        server.handle(env)
    res = server.result
    assert res is not None
    obj = unpack(res.encrypted_sum)
    total = res.total_weight
    if field == "weight":  # and announce the total that matches, as a careful server would
        total = total - obj["uploads"][0][1] + 5.0
        obj["uploads"][0][1] = 5.0
    elif field == "weight_scale":
        obj["weight_scale"] = 1000.0
    elif field == "round":
        obj["round"] = 5
    elif field == "site":
        obj["uploads"][0][0] = "d"
    else:
        total = total / 10
    with pytest.raises(IntegrityError):
        decrypt_aggregate(
            ckks_kit.secret,
            pack(obj),
            total,
            D,
            roster=ckks_kit.roster,
            federation=FEDERATION,
            max_weight=MAX_WEIGHT,
        )


def test_a_site_of_another_roster_cannot_be_counted(ckks_kit: Kit) -> None:
    stranger = make_kit(ckks_kit.secret)  # same HE key, other identities
    rc = _rc()
    server = ckks_kit.server_mode().server(rc)
    for site, env in _honest(stranger, rc).items():
        server.handle(env)
        assert isinstance(server.rejected[site], IntegrityError)
