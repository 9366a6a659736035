"""Write tests/vectors/hazmat_*.json from fixed inputs, cross-checking every value.

Run from the repository root: ``python tests/vectors/generate_hazmat.py``.
The output is deterministic (fixed keys, nonces, coefficients and rounding
uniforms; sorted JSON keys), so re-running it must leave ``git diff`` empty.

Every self-generated value is computed twice: once through securefl.hazmat,
once by an independent route written out here (HKDF from ``hmac``, the
length-prefixed encoding from ``struct``, GCM from AES-ECB plus a pure-Python
GHASH, the CTR keystream from AES-ECB of the counter blocks, Shamir shares by
naive polynomial evaluation, quantization element by element with ``math``).
Published vectors (RFC 7748, RFC 5869, RFC 8032, the GCM specification) are
checked against pyca/cryptography before they are written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from securefl.hazmat import aead, keys, prg, shamir, sign
from securefl.hazmat.quantize import QuantizationParams, _quantize_from_parts

OUT = Path(__file__).resolve().parent

# ---------------------------------------------------------------- references


def hkdf_ref(ikm: bytes, info: bytes, length: int, salt: bytes = b"") -> bytes:
    """RFC 5869 HKDF-SHA256 written out with hmac."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def encode_ref(context: bytes, *fields: Any) -> bytes:
    out = context + b"\x00" + struct.pack(">I", len(fields))
    for f in fields:
        if isinstance(f, bytes):
            out += b"\x01" + struct.pack(">I", len(f)) + f
        elif isinstance(f, str):
            b = f.encode()
            out += b"\x02" + struct.pack(">I", len(b)) + b
        else:
            out += b"\x03" + struct.pack(">I", 8) + struct.pack(">Q", f)
    return out


def aes_ecb(key: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def gf128_mul(x: int, y: int) -> int:
    r = 0xE1 << 120
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ r if v & 1 else v >> 1
    return z


def gcm_ref(key: bytes, nonce: bytes, pt: bytes, ad: bytes) -> bytes:
    """AES-GCM with a 96-bit nonce from AES-ECB and a bitwise GHASH (NIST SP 800-38D)."""
    h = int.from_bytes(aes_ecb(key, bytes(16)), "big")
    j0 = nonce + b"\x00\x00\x00\x01"
    blocks = b"".join(nonce + struct.pack(">I", 2 + i) for i in range(-(-len(pt) // 16)))
    ks = aes_ecb(key, blocks) if blocks else b""
    ct = bytes(a ^ b for a, b in zip(pt, ks, strict=False))

    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 16)

    data = pad(ad) + pad(ct) + struct.pack(">QQ", 8 * len(ad), 8 * len(ct))
    s = 0
    for i in range(0, len(data), 16):
        s = gf128_mul(s ^ int.from_bytes(data[i : i + 16], "big"), h)
    tag = (s ^ int.from_bytes(aes_ecb(key, j0), "big")).to_bytes(16, "big")
    return nonce + ct + tag


def ctr_ref(key: bytes, nbytes: int) -> bytes:
    counters = b"".join(i.to_bytes(16, "big") for i in range(-(-nbytes // 16)))
    return aes_ecb(key, counters)[:nbytes]


def poly_ref(coeffs: list[int], x: int) -> int:
    return sum(c * pow(x, k, shamir.PRIME) for k, c in enumerate(coeffs)) % shamir.PRIME


def h(b: bytes) -> str:
    return b.hex()


def det_bytes(label: str, n: int) -> bytes:
    """Fixed pseudo-random test input: SHA-256 in counter mode over a label (not a secret)."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"securefl-vectors/{label}/{i}".encode()).digest()
        i += 1
    return out[:n]


# ---------------------------------------------------------------- keys

RFC7748 = {
    "alice_private": "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    "alice_public": "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
    "bob_private": "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    "bob_public": "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
    "shared": "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
}

LOW_ORDER = [  # X25519 points of small order (and non-canonical encodings of them)
    "00" * 32,
    "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ec" + "ff" * 30 + "7f",
    "ed" + "ff" * 30 + "7f",
    "ee" + "ff" * 30 + "7f",
]


def keys_vectors() -> dict[str, Any]:
    # RFC 5869 test case 1 pins the reference HKDF itself.
    rfc5869 = {
        "ikm": "0b" * 22,
        "salt": "000102030405060708090a0b0c",
        "info": "f0f1f2f3f4f5f6f7f8f9",
        "length": 42,
        "okm": "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        "34007208d5b887185865",
    }
    got = hkdf_ref(
        bytes.fromhex(rfc5869["ikm"]),  # type: ignore[arg-type]
        bytes.fromhex(rfc5869["info"]),  # type: ignore[arg-type]
        42,
        salt=bytes.fromhex(rfc5869["salt"]),  # type: ignore[arg-type]
    )
    assert h(got) == rfc5869["okm"], "reference HKDF disagrees with RFC 5869"

    a = X25519PrivateKey.from_private_bytes(bytes.fromhex(RFC7748["alice_private"]))
    b = X25519PrivateKey.from_private_bytes(bytes.fromhex(RFC7748["bob_private"]))
    shared = a.exchange(X25519PublicKey.from_public_bytes(bytes.fromhex(RFC7748["bob_public"])))
    assert h(shared) == RFC7748["shared"], "X25519 disagrees with RFC 7748"
    assert h(keys.KeyPair(a).public_bytes()) == RFC7748["alice_public"]
    assert h(keys.KeyPair(b).public_bytes()) == RFC7748["bob_public"]

    derive = []
    for purpose, rnd, x, y, fed, length in [
        ("mask", 0, "site-a", "site-b", "fed-1", 32),
        ("mask", 7, "site-b", "site-a", "fed-1", 32),
        ("share-key", 7, "hospital-é", "hospital-z", "fédération", 32),
        ("mask", 2**40, "a", "b", "f", 64),
    ]:
        info = keys.kdf_info(purpose, rnd, x, y, fed)
        lo, hi = sorted((x, y))
        assert info == encode_ref(keys.KDF_INFO_CONTEXT, purpose, fed, rnd, lo, hi)
        okm = keys.derive_key(a, bytes.fromhex(RFC7748["bob_public"]), info=info, length=length)
        assert okm == hkdf_ref(shared, info, length)
        assert okm == keys.derive_key(
            b, bytes.fromhex(RFC7748["alice_public"]), info=info, length=length
        )
        derive.append(
            {
                "purpose": purpose,
                "round_id": rnd,
                "a": x,
                "b": y,
                "federation": fed,
                "length": length,
                "info": h(info),
                "okm": h(okm),
            }
        )
    for pt in LOW_ORDER:
        try:
            out = a.exchange(X25519PublicKey.from_public_bytes(bytes.fromhex(pt)))
            assert out == bytes(32)
        except ValueError:
            pass
    return {
        "rfc7748": RFC7748,
        "rfc5869_case1": rfc5869,
        "derive": derive,
        "invalid_public_keys": {
            "low_order": LOW_ORDER,
            "wrong_length": ["", "00" * 31, RFC7748["bob_public"] + "00"],
        },
    }


# ---------------------------------------------------------------- aead

GCM_SPEC = [  # McGrew & Viega, "The GCM mode of operation", test cases 13 and 14 (AES-256)
    {
        "key": "00" * 32,
        "nonce": "00" * 12,
        "plaintext": "",
        "ad": "",
        "sealed": "00" * 12 + "530f8afbc74536b9a963b4f1c4cb738b",
    },
    {
        "key": "00" * 32,
        "nonce": "00" * 12,
        "plaintext": "00" * 16,
        "ad": "",
        "sealed": "00" * 12 + "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919",
    },
]


def aead_vectors() -> dict[str, Any]:
    for v in GCM_SPEC:
        args = [bytes.fromhex(v[k]) for k in ("key", "nonce", "plaintext", "ad")]
        assert h(aead._seal_from_parts(*args)) == v["sealed"], "GCM spec vector mismatch"
        assert h(gcm_ref(*args)) == v["sealed"], "reference GCM mismatch"
    seal = []
    for i, (pt_len, fields) in enumerate(
        [
            (0, ("fed-1", 0, "site-a", "site-b", "share-keys")),
            (66, ("fed-1", 3, "site-a", "site-b", "share-keys")),
            (100, ("fed-2", 3, "site-b", "site-a", "share-keys")),
        ]
    ):
        key, nonce = det_bytes(f"aead-key-{i}", 32), det_bytes(f"aead-nonce-{i}", 12)
        pt = det_bytes(f"aead-pt-{i}", pt_len)
        ad = aead.share_ad(*fields)
        assert ad == encode_ref(aead.SHARE_AD_CONTEXT, *fields)
        sealed = aead._seal_from_parts(key, nonce, pt, ad)
        assert sealed == gcm_ref(key, nonce, pt, ad)
        assert aead.open_(key, sealed, associated_data=ad) == pt
        seal.append(
            {
                "key": h(key),
                "nonce": h(nonce),
                "plaintext": h(pt),
                "ad_fields": list(fields),
                "ad": h(ad),
                "sealed": h(sealed),
            }
        )
    base = seal[1]
    sealed = bytes.fromhex(base["sealed"])
    flipped_tag = sealed[:-1] + bytes([sealed[-1] ^ 1])
    flipped_ct = sealed[:20] + bytes([sealed[20] ^ 0x80]) + sealed[21:]
    flipped_nonce = bytes([sealed[0] ^ 1]) + sealed[1:]
    other_ad = aead.share_ad("fed-1", 4, "site-a", "site-b", "share-keys")  # next round
    rerouted = aead.share_ad("fed-1", 3, "site-b", "site-a", "share-keys")  # swapped direction
    must_fail = [
        {"why": "tampered tag", "key": base["key"], "sealed": h(flipped_tag), "ad": base["ad"]},
        {
            "why": "tampered ciphertext",
            "key": base["key"],
            "sealed": h(flipped_ct),
            "ad": base["ad"],
        },
        {"why": "tampered nonce", "key": base["key"], "sealed": h(flipped_nonce), "ad": base["ad"]},
        {
            "why": "moved to another round",
            "key": base["key"],
            "sealed": base["sealed"],
            "ad": h(other_ad),
        },
        {"why": "rerouted", "key": base["key"], "sealed": base["sealed"], "ad": h(rerouted)},
        {"why": "wrong key", "key": seal[0]["key"], "sealed": base["sealed"], "ad": base["ad"]},
        {"why": "truncated", "key": base["key"], "sealed": h(sealed[:-1]), "ad": base["ad"]},
        {
            "why": "shorter than nonce and tag",
            "key": base["key"],
            "sealed": h(sealed[:27]),
            "ad": base["ad"],
        },
        {"why": "empty", "key": base["key"], "sealed": "", "ad": base["ad"]},
        {"why": "short key", "key": base["key"][:62], "sealed": base["sealed"], "ad": base["ad"]},
    ]
    for v in must_fail:
        try:
            aead.open_(
                bytes.fromhex(v["key"]),
                bytes.fromhex(v["sealed"]),
                associated_data=bytes.fromhex(v["ad"]),
            )
        except Exception:
            continue
        raise AssertionError(f"must-fail vector opened: {v['why']}")
    return {"gcm_spec": GCM_SPEC, "seal": seal, "must_fail": must_fail}


# ---------------------------------------------------------------- sign

RFC8032 = [  # RFC 8032 section 7.1, TEST 1, 2 and 3
    {
        "secret": "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "public": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "message": "",
        "signature": "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    },
    {
        "secret": "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "public": "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "message": "72",
        "signature": "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    },
    {
        "secret": "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "public": "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "message": "af82",
        "signature": "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    },
]


def _field_json(f: Any) -> dict[str, Any]:
    if isinstance(f, bytes):
        return {"bytes": h(f)}
    if isinstance(f, str):
        return {"str": f}
    return {"int": f}


def sign_vectors() -> dict[str, Any]:
    for v in RFC8032:
        key = sign.SigningKey.from_private_bytes(bytes.fromhex(v["secret"]))
        assert h(key.public_bytes()) == v["public"]
        assert h(key.sign(bytes.fromhex(v["message"]))) == v["signature"]
    key = sign.SigningKey.from_private_bytes(bytes.fromhex(RFC8032[0]["secret"]))
    messages = []
    for domain, fields in [
        (
            "secagg/key-advert/v1",
            ("fed-1", 3, "site-a", det_bytes("advert-c", 32), det_bytes("advert-s", 32)),
        ),
        ("secagg/consistency/v1", ("fed-1", 3, "site-a,site-b,site-c")),
        ("reports/privacy-record/v1", ("site-a", 3, b"")),
    ]:
        msg = sign.signed_message(domain, *fields)
        assert msg == encode_ref(sign.SIGNED_MESSAGE_CONTEXT, domain, *fields)
        sig = key.sign(msg)
        Ed25519PublicKey.from_public_bytes(key.public_bytes()).verify(sig, msg)
        messages.append(
            {
                "domain": domain,
                "fields": [_field_json(f) for f in fields],
                "message": h(msg),
                "signature": h(sig),
            }
        )
    m0 = bytes.fromhex(messages[0]["message"])
    s0 = bytes.fromhex(messages[0]["signature"])
    other_domain = sign.signed_message(
        "secagg/consistency/v1",
        *[
            bytes.fromhex(f["bytes"]) if "bytes" in f else f.get("str", f.get("int"))
            for f in messages[0]["fields"]
        ],
    )
    pub = RFC8032[0]["public"]
    must_fail = [
        {
            "why": "flipped signature bit",
            "public": pub,
            "message": h(m0),
            "signature": h(s0[:10] + bytes([s0[10] ^ 4]) + s0[11:]),
        },
        {
            "why": "flipped message bit",
            "public": pub,
            "message": h(m0[:-1] + bytes([m0[-1] ^ 1])),
            "signature": h(s0),
        },
        {
            "why": "signature from another domain",
            "public": pub,
            "message": h(other_domain),
            "signature": h(s0),
        },
        {
            "why": "another key",
            "public": RFC8032[1]["public"],
            "message": h(m0),
            "signature": h(s0),
        },
        {"why": "truncated signature", "public": pub, "message": h(m0), "signature": h(s0[:63])},
        {"why": "short public key", "public": pub[:62], "message": h(m0), "signature": h(s0)},
        {"why": "empty signature", "public": pub, "message": h(m0), "signature": ""},
    ]
    for v in must_fail:
        try:
            sign.verify(
                bytes.fromhex(v["public"]),
                bytes.fromhex(v["message"]),
                bytes.fromhex(v["signature"]),
            )
        except Exception:
            continue
        raise AssertionError(f"must-fail vector verified: {v['why']}")
    return {"rfc8032": RFC8032, "signed_messages": messages, "must_fail": must_fail}


# ---------------------------------------------------------------- shamir


def shamir_vectors() -> dict[str, Any]:
    out = []
    for i, (slen, t, ids) in enumerate(
        [(32, 2, [1, 2, 3]), (32, 3, [1, 2, 3, 4, 5]), (16, 4, [2, 5, 7, 11, 300]), (64, 2, [1, 2])]
    ):
        secret = det_bytes(f"shamir-secret-{i}", slen)
        coeffs = [
            int.from_bytes(det_bytes(f"shamir-coeff-{i}-{k}", 66), "big") % shamir.PRIME
            for k in range(t - 1)
        ]
        shares = shamir._split_from_parts(secret, coeffs, ids)
        full = [int.from_bytes(secret, "big"), *coeffs]
        for x in ids:
            assert int.from_bytes(shares[x], "big") == poly_ref(full, x)
        assert (
            shamir.combine(dict(list(shares.items())[:t]), threshold=t, secret_len=slen) == secret
        )
        out.append(
            {
                "secret": h(secret),
                "threshold": t,
                "coefficients": [str(c) for c in coeffs],
                "share_ids": ids,
                "shares": {str(x): h(s) for x, s in shares.items()},
            }
        )
    return {"prime": str(shamir.PRIME), "share_len": shamir.SHARE_LEN, "split": out}


# ---------------------------------------------------------------- prg


def prg_vectors() -> dict[str, Any]:
    out = []
    for i, n in enumerate([8, 37]):
        seed = bytes(32) if i == 0 else det_bytes("prg-seed", 32)
        ks = ctr_ref(seed, 8 * n)
        w32 = np.frombuffer(ks[: 4 * n], dtype="<u4").astype(np.uint32)
        w64 = np.frombuffer(ks, dtype="<u8").astype(np.uint64)
        assert (prg.mask_vector(seed, n, np.uint32) == w32).all()
        assert (prg.mask_vector(seed, n, np.uint64) == w64).all()
        out.append(
            {
                "seed": h(seed),
                "n": n,
                "keystream": h(ks),
                "uint32": [str(int(v)) for v in w32],
                "uint64": [str(int(v)) for v in w64],
            }
        )
    return {"mask": out}


# ---------------------------------------------------------------- quantize


def quantize_vectors() -> dict[str, Any]:
    out = []
    cases = [
        (1.0, 32, 10, None, [0.0, 0.5, -0.5, 1.0, -1.0, 0.1, -0.1, 1e-9]),
        (0.25, 20, 100, 8, [0.25, -0.25, 0.0, 0.125, -0.0625, 0.2]),
        (3.0, 48, 1000, 30, [2.9, -2.9, 1.5, -0.001]),
    ]
    for i, (clip, bits, ms, prec, xs) in enumerate(cases):
        p = QuantizationParams(clip=clip, bits=bits, max_summands=ms, precision_bits=prec)
        x = np.array(xs, dtype=np.float32)
        words = np.frombuffer(det_bytes(f"quantize-u-{i}", 8 * len(xs)), dtype="<u8")
        u = (words >> np.uint64(11)).astype(np.float64) * 2.0**-53
        q = _quantize_from_parts(x, p, u)
        for xi, ui, qi in zip(x, u, q, strict=True):
            ref = math.floor(float(xi) * p.scale + float(ui)) % (1 << bits)
            assert int(qi) == ref
        out.append(
            {
                "clip": clip,
                "bits": bits,
                "max_summands": ms,
                "precision_bits": p.precision_bits,
                "scale": p.scale,
                "x_float32": [float(v) for v in x],
                "uniforms": [float(v) for v in u],
                "q": [str(int(v)) for v in q],
            }
        )
    return {"quantize": out}


def main() -> None:
    for name, fn in [
        ("keys", keys_vectors),
        ("aead", aead_vectors),
        ("sign", sign_vectors),
        ("shamir", shamir_vectors),
        ("prg", prg_vectors),
        ("quantize", quantize_vectors),
    ]:
        path = OUT / f"hazmat_{name}.json"
        path.write_text(json.dumps(fn(), indent=1, sort_keys=True, ensure_ascii=True) + "\n")
        print(f"wrote {path.name}")


if __name__ == "__main__":
    main()
