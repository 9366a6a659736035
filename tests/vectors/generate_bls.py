"""Write tests/vectors/bls_multisig.json from fixed inputs, cross-checking every value.

Run from the repository root: ``python tests/vectors/generate_bls.py``. The
output is deterministic (fixed seeds and messages; BLS signing is
deterministic; sorted JSON keys), so re-running it must leave ``git diff``
empty.

Three kinds of values:

- ``eth2``: published vectors of the Ethereum consensus-spec BLS tests,
  which use the same ciphersuite as :mod:`securefl.hazmat.bls`
  (BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_: keys in G1, signatures in
  G2, proof-of-possession scheme), checked against blspy before they are
  written.
- ``derived``: each site's BLS key as ``BlsKey.from_identity`` derives it
  from a fixed Ed25519 seed, its proof of possession, its signature over a
  fixed message, and the aggregate of the three. The HKDF step and the
  IETF KeyGen (draft-irtf-cfrg-bls-signature-02, as blspy implements it)
  are recomputed here with ``hmac``, and every public key (and the sum of
  the three) is recomputed by a pure-Python double-and-add on
  y^2 = x^3 + 4 over F_p and compressed in the ZCash format, independently
  of blspy.
- ``must_fail``: encodings every check must refuse (the identity element
  as key or signature, a point of the curve outside the prime-order
  subgroup computed here with Python integers, an x off the curve, the
  compression flag missing, wrong lengths, fixed random bytes, a tampered
  published signature); the generator checks blspy refuses each parse or
  verification.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import blspy

from securefl.hazmat.bls import BlsKey
from securefl.hazmat.sign import SigningKey

OUT = Path(__file__).resolve().parent

P = int(
    "1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf"
    "6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab",
    16,
)
R = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
G1 = (
    0x17F1D3A73197D7942695638C4FA9AC0FC3688C4F9774B905A14E3A3F171BAC586C55E83FF97A1AEFFB3AF00ADB22C6BB,
    0x08B3F481E3AAA0F1A09E30ED741D8AE4FCF5E095D5D00AF600DB18CB2C04B3EDD03CC744A2888AE40CAA232946C5E7E1,
)
COFACTOR = 0x396C8C005555E1568C00AAAB0000AAAB  # of G1: #E(F_p) = COFACTOR * R
Point = tuple[int, int] | None  # None: the point at infinity

MESSAGE = b"securefl/vectors/bls: one survivor list"

# Ethereum consensus-spec tests, general/phase0/bls (sign, aggregate, fast_aggregate_verify).
ETH2_SIGN = [
    {
        "secret": "263dbd792f5b1be47ed85f8938c0f29586af0d3ac7b977f21c278fe1462040e3",
        "public": "a491d1b0ecd9bb917989f0e74f0dea0422eac4a873e5e264"
        "4f368dffb9a6e20fd6e10c1b77654d067c0618f6e5a7f79a",
        "message": "00" * 32,
        "signature": "b6ed936746e01f8ecf281f020953fbf1f01debd5657c4a383940b020b26507f6"
        "076334f91e2366c96e9ab279fb5158090352ea1c5b0c9274504f4f0e7053af24"
        "802e51e4568d164fe986834f41e55c8e850ce1f98458c0cfc9ab380b55285a55",
    },
    {
        "secret": "47b8192d77bf871b62e87859d653922725724a5c031afeabc60bcef5ff665138",
        "public": "b301803f8b5ac4a1133581fc676dfedc60d891dd5fa99028"
        "805e5ea5b08d3491af75d0707adab3b70c6a6a580217bf81",
        "message": "00" * 32,
        "signature": "b23c46be3a001c63ca711f87a005c200cc550b9429d5f4eb38d74322144f1b63"
        "926da3388979e5321012fb1a0526bcd100b5ef5fe72628ce4cd5e904aeaa3279"
        "527843fae5ca9ca675f4f51ed8f83bbf7155da9ecc9663100a885d5dc6df96d9",
    },
]
ETH2_AGGREGATE = {  # aggregate_0x0000000000000000000000000000000000000000000000000000000000000000
    "signatures": [
        ETH2_SIGN[0]["signature"],
        ETH2_SIGN[1]["signature"],
        "948a7cb99f76d616c2c564ce9bf4a519f1bea6b0a624a02276443c245854219f"
        "abb8d4ce061d255af5330b078d5380681751aa7053da2c98bae898edc218c75f"
        "07e24d8802a17cd1f6833b71e58f5eb5b94208b4d0bb3848cecb075ea21be115",
    ],
    "aggregate": "9683b3e6701f9a4b706709577963110043af78a5b41991b998475a3d3fd62abf"
    "35ce03b33908418efc95a058494a8ae504354b9f626231f6b3f3c849dfdeaf50"
    "17c4780e2aee1850ceaf4b4d9ce70971a3d2cfcd97b7e5ecf6759f8da5f76d31",
}
ETH2_FAST_AGGREGATE = {  # fast_aggregate_verify_valid_3d7576f3c0e3570a
    "publics": [
        ETH2_SIGN[0]["public"],
        ETH2_SIGN[1]["public"],
        "b53d21a4cfd562c469cc81514d4ce5a6b577d8403d32a394dc265dd190b47fa9f829fdd7963afdf972e5e77854051f6f",
    ],
    "message": "ab" * 32,
    "signature": "9712c3edd73a209c742b8250759db12549b3eaf43b5ca61376d9f30e2747dbcf"
    "842d8b2ac0901d2a093713e20284a7670fcf6954e9ab93de991bb9b313e66478"
    "5a075fc285806fa5224c82bde146561b446ccfc706a64b8579513cfc4ff1d930",
}

# ---------------------------------------------------------------- references


def det_bytes(label: str, n: int) -> bytes:
    """Fixed pseudo-random test input: SHA-256 in counter mode over a label (not a secret)."""
    out, i = b"", 0
    while len(out) < n:
        out += hashlib.sha256(f"securefl-vectors/{label}/{i}".encode()).digest()
        i += 1
    return out[:n]


def _hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def identity_ikm_ref(seed: bytes) -> bytes:
    """HKDF-SHA256(seed, salt = none, info = securefl/bls-identity/v1), 32 bytes, with hmac."""
    prk = hmac.new(bytes(32), seed, hashlib.sha256).digest()
    return _hkdf_expand(prk, b"securefl/bls-identity/v1", 32)


def keygen_ref(ikm: bytes) -> int:
    """IETF BLS KeyGen (draft 02): HKDF with the KEYGEN salt, 48 bytes, reduced mod r."""
    prk = hmac.new(b"BLS-SIG-KEYGEN-SALT-", ikm + b"\x00", hashlib.sha256).digest()
    return int.from_bytes(_hkdf_expand(prk, (48).to_bytes(2, "big"), 48), "big") % R


def g1_add(a: Point, b: Point) -> Point:
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % P == 0:
        return None
    if a == b:
        lam = 3 * a[0] * a[0] * pow(2 * a[1], -1, P) % P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return x, (lam * (a[0] - x) - a[1]) % P


def g1_mul(k: int, pt: Point) -> Point:
    out: Point = None
    while k:
        if k & 1:
            out = g1_add(out, pt)
        pt = g1_add(pt, pt)
        k >>= 1
    return out


def g1_compress(pt: Point) -> bytes:
    """ZCash format: big-endian x, top bits 0b100 (compressed), 0x20 when y > (p - 1) / 2."""
    if pt is None:
        return bytes([0xC0]) + bytes(47)
    raw = bytearray(pt[0].to_bytes(48, "big"))
    raw[0] |= 0x80 | (0x20 if pt[1] > (P - 1) // 2 else 0)
    return bytes(raw)


def off_subgroup_point() -> tuple[int, int]:
    """The first point of y^2 = x^3 + 4 with x >= a fixed value whose r-multiple is not O."""
    x = int.from_bytes(det_bytes("bls/off-subgroup", 47), "big")
    while True:
        rhs = (x**3 + 4) % P
        y = pow(rhs, (P + 1) // 4, P)  # p = 3 mod 4
        if y * y % P == rhs and g1_mul(R, (x, y)) is not None:
            return x, y
        x += 1


def off_curve_x() -> int:
    x = int.from_bytes(det_bytes("bls/off-curve", 47), "big")
    while True:
        rhs = (x**3 + 4) % P
        if pow(rhs, (P - 1) // 2, P) == P - 1:  # not a square: no y
            return x
        x += 1


def h(b: bytes) -> str:
    return b.hex()


# ---------------------------------------------------------------- vectors


def eth2_vectors() -> dict[str, Any]:
    for v in ETH2_SIGN:
        sk = blspy.PrivateKey.from_bytes(bytes.fromhex(v["secret"]))
        assert h(bytes(sk.get_g1())) == v["public"]
        assert h(bytes(blspy.PopSchemeMPL.sign(sk, bytes.fromhex(v["message"])))) == v["signature"]
        assert g1_compress(g1_mul(int(v["secret"], 16), G1)).hex() == v["public"]
    sigs = [blspy.G2Element.from_bytes(bytes.fromhex(s)) for s in ETH2_AGGREGATE["signatures"]]
    assert h(bytes(blspy.PopSchemeMPL.aggregate(sigs))) == ETH2_AGGREGATE["aggregate"]
    v = ETH2_FAST_AGGREGATE
    pks = [blspy.G1Element.from_bytes(bytes.fromhex(p)) for p in v["publics"]]
    sig = blspy.G2Element.from_bytes(bytes.fromhex(v["signature"]))
    assert blspy.PopSchemeMPL.fast_aggregate_verify(pks, bytes.fromhex(v["message"]), sig)
    assert not blspy.PopSchemeMPL.fast_aggregate_verify(pks[:2], bytes.fromhex(v["message"]), sig)
    return {"sign": ETH2_SIGN, "aggregate": ETH2_AGGREGATE, "fast_aggregate_verify": v}


def derived_vectors() -> dict[str, Any]:
    sites, total = [], None
    for i in range(3):
        seed = det_bytes(f"bls/identity/{i}", 32)
        identity = SigningKey.from_private_bytes(seed)
        key = BlsKey.from_identity(identity)
        ikm = identity_ikm_ref(seed)
        secret = keygen_ref(ikm)
        assert secret == int.from_bytes(bytes(blspy.PopSchemeMPL.key_gen(ikm)), "big")
        point = g1_mul(secret, G1)
        assert key.public_bytes() == g1_compress(point)
        total = g1_add(total, point)
        pop, sig = key.prove_possession(), key.sign(MESSAGE)
        pk = blspy.G1Element.from_bytes(key.public_bytes())
        assert blspy.PopSchemeMPL.pop_verify(pk, blspy.G2Element.from_bytes(pop))
        assert blspy.PopSchemeMPL.verify(pk, MESSAGE, blspy.G2Element.from_bytes(sig))
        sites.append(
            {
                "ed25519_seed": h(seed),
                "ed25519_public": h(identity.public_bytes()),
                "keygen_ikm": h(ikm),
                "bls_secret": f"{secret:064x}",
                "bls_public": h(key.public_bytes()),
                "proof_of_possession": h(pop),
                "signature": h(sig),
            }
        )
    sigs = [blspy.G2Element.from_bytes(bytes.fromhex(s["signature"])) for s in sites]
    agg = blspy.PopSchemeMPL.aggregate(sigs)
    pks = [blspy.G1Element.from_bytes(bytes.fromhex(s["bls_public"])) for s in sites]
    assert blspy.PopSchemeMPL.fast_aggregate_verify(pks, MESSAGE, agg)
    key_sum = pks[0] + pks[1] + pks[2]
    assert bytes(key_sum) == g1_compress(total)
    return {
        "message": h(MESSAGE),
        "sites": sites,
        "aggregate": h(bytes(agg)),
        "public_key_sum": h(bytes(key_sum)),
    }


def _g1_refused(b: bytes) -> bool:
    try:
        blspy.G1Element.from_bytes(b)
    except (ValueError, RuntimeError):
        return True
    return b == bytes([0xC0]) + bytes(47)  # parses, but is the identity: securefl refuses it


def _g2_refused(b: bytes) -> bool:
    try:
        blspy.G2Element.from_bytes(b)
    except (ValueError, RuntimeError):
        return True
    return b == bytes([0xC0]) + bytes(95)


def must_fail_vectors() -> list[dict[str, str]]:
    off = off_subgroup_point()
    off_bytes = g1_compress(off)
    assert g1_mul(R, off) is not None and (off[1] ** 2 - off[0] ** 3 - 4) % P == 0
    no_flag = bytearray(bytes.fromhex(ETH2_SIGN[0]["public"]))
    no_flag[0] &= 0x7F
    tampered = bytes.fromhex(ETH2_FAST_AGGREGATE["signature"])[:-4] + b"\xff" * 4
    # site 0's key plus a point of small order: it checks every signature of site 0
    # (e(T, Q) = 1 for T of order prime to r) unless the subgroup check refuses it
    torsion = g1_mul(R, off)
    assert torsion is not None and g1_mul(COFACTOR, torsion) is None
    seed0 = det_bytes("bls/identity/0", 32)
    twin = g1_add(g1_mul(keygen_ref(identity_ikm_ref(seed0)), G1), torsion)
    assert twin is not None and g1_mul(R, twin) is not None
    cases = [
        ("public", "the identity element of G1", bytes([0xC0]) + bytes(47)),
        ("public", "a curve point outside the prime-order subgroup", off_bytes),
        ("public", "site 0's key plus a point of small order", g1_compress(twin)),
        ("public", "an x with no point on the curve", g1_compress((off_curve_x(), 0))),
        ("public", "the compression flag cleared", bytes(no_flag)),
        ("public", "47 bytes", bytes.fromhex(ETH2_SIGN[0]["public"])[:47]),
        ("public", "49 bytes", bytes.fromhex(ETH2_SIGN[0]["public"]) + b"\x00"),
        ("public", "fixed random bytes", det_bytes("bls/random-public", 48)),
        ("public", "empty", b""),
        ("signature", "the identity element of G2", bytes([0xC0]) + bytes(95)),
        ("signature", "a tampered published signature", tampered),
        ("signature", "95 bytes", bytes.fromhex(ETH2_SIGN[0]["signature"])[:95]),
        ("signature", "fixed random bytes", det_bytes("bls/random-signature", 96)),
        ("signature", "an Ed25519-sized signature", det_bytes("bls/ed25519-size", 64)),
    ]
    out = []
    for kind, why, raw in cases:
        if kind == "public" and len(raw) == 48:
            assert _g1_refused(raw), why
        elif len(raw) == 96 and raw != tampered:
            assert _g2_refused(raw), why
        out.append({"kind": kind, "why": why, "bytes": h(raw)})
    # the tampered signature parses (or not) but never verifies under the published keys
    pks = [blspy.G1Element.from_bytes(bytes.fromhex(p)) for p in ETH2_FAST_AGGREGATE["publics"]]
    try:
        sig = blspy.G2Element.from_bytes(tampered)
        ok = blspy.PopSchemeMPL.fast_aggregate_verify(
            pks, bytes.fromhex(ETH2_FAST_AGGREGATE["message"]), sig
        )
    except (ValueError, RuntimeError):
        ok = False
    assert not ok
    return out


def main() -> None:
    data = {"eth2": eth2_vectors(), "derived": derived_vectors(), "must_fail": must_fail_vectors()}
    path = OUT / "bls_multisig.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=True) + "\n")


if __name__ == "__main__":
    main()
