"""Generate the known-answer vectors of securefl.secagg's thresholds, adverts and sum check.

    python tests/vectors/generate_secagg.py

Everything here is computed without securefl:

- ``thresholds``: for n = 3..40, the smallest t with 2t > n + floor((n-1)/3)
  and t >= 3 (the minimum cohort), found by counting up; with it the
  colluders tolerated, 2t - n - 1, and the dropouts tolerated, n - t; and the
  same with corrupt = 0 (the earlier formula floor(n/2)+1, raised to 3), whose
  colluders are the plan's min(2t - n - 1, n - 2) (at t = n, n - 1 colluders
  would leave one honest site in the sum).
- ``cohort_thresholds``: for a federation of N = 3..24 sites (c =
  floor((N-1)/3) colluders assumed from N, not from the cohort), each cohort
  size n = 3..N: refused (t null) when n < max(3, c + 2), else the smallest
  t >= 3 with 2t > n + c; and per N the colluders withstood over every cohort
  the server may open, the least of min(2t - n - 1, n - 2).
- ``adverts``: the bytes a site signs for its key advert, encoded with
  ``struct`` after docs/mask.md and securefl/hazmat/sign.py (context
  ``securefl/signed/v1``, domain ``securefl/mask/advert/v2``, then federation,
  round, site, c_pk, s_pk, commitment, round-start digest as typed
  length-prefixed fields); an Ed25519 signature under a fixed, public test
  key (seed bytes 0..31); and must-fail copies whose digest, round or site
  differ, under which the same signature must not verify.
- ``feasibility``: quantized sums (integers, S_0 first) over m summands at a
  given clip and precision, with whether honest inputs can produce them:
  0 < S_0 <= m (floor(clip scale) + 2) and |S_i| <= S_0 + 2m (a zero total
  weight has no mean).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = Path(__file__).parent
CONTEXT = b"securefl/signed/v1"
ADVERT_DOMAIN = "securefl/mask/advert/v2"
TEST_SEED = bytes(range(32))  # a fixed, public test key: never use it for anything else


def det_bytes(label: str, n: int) -> bytes:
    """Fixed pseudo-random test input: SHA-256 in counter mode over a label (not a secret)."""
    out, i = b"", 0
    while len(out) < n:
        out += hashlib.sha256(f"securefl-vectors/{label}/{i}".encode()).digest()
        i += 1
    return out[:n]


def encode_ref(*fields: Any) -> bytes:
    out = CONTEXT + b"\x00" + struct.pack(">I", len(fields))
    for f in fields:
        if isinstance(f, bytes):
            out += b"\x01" + struct.pack(">I", len(f)) + f
        elif isinstance(f, str):
            b = f.encode()
            out += b"\x02" + struct.pack(">I", len(b)) + b
        else:
            out += b"\x03" + struct.pack(">I", 8) + struct.pack(">Q", f)
    return out


def threshold(n: int, c: int) -> int:
    t = 3
    while not 2 * t > n + c:
        t += 1
    return t


def thresholds() -> list[dict[str, int]]:
    rows = []
    for n in range(3, 41):
        t, t0 = threshold(n, (n - 1) // 3), threshold(n, 0)
        rows.append(
            {
                "n": n,
                "t": t,
                "colluders": 2 * t - n - 1,
                "dropouts": n - t,
                "t_corrupt_0": t0,
                "colluders_corrupt_0": min(2 * t0 - n - 1, n - 2),
            }
        )
    return rows


def cohort_thresholds() -> list[dict[str, Any]]:
    """For a federation of N sites, every cohort size n the server may open."""
    rows: list[dict[str, Any]] = []
    for big_n in range(3, 25):
        c = (big_n - 1) // 3
        least = None
        for n in range(3, big_n + 1):
            if n < max(3, c + 2):
                rows.append({"N": big_n, "n": n, "t": None})
                continue
            t = threshold(n, c)
            here = min(2 * t - n - 1, n - 2)
            least = here if least is None else min(least, here)
            rows.append({"N": big_n, "n": n, "t": t})
        rows.append({"N": big_n, "tolerance": least})
    return rows


def adverts() -> dict[str, Any]:
    key = Ed25519PrivateKey.from_private_bytes(TEST_SEED)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    cases = []
    for i, (fed, rnd, site) in enumerate([("fed", 1, "site-00"), ("cardio", 7, "hospital-b")]):
        fields = {
            "federation": fed,
            "round": rnd,
            "site": site,
            "c_pk": det_bytes(f"advert-c-{i}", 32),
            "s_pk": det_bytes(f"advert-s-{i}", 32),
            "commit": det_bytes(f"advert-commit-{i}", 32),
            "digest": det_bytes(f"advert-digest-{i}", 32),
        }
        order = ("federation", "round", "site", "c_pk", "s_pk", "commit", "digest")
        message = encode_ref(ADVERT_DOMAIN, *(fields[k] for k in order))
        signature = key.sign(message)
        must_fail = []
        for what, change in (
            ("other digest", {"digest": det_bytes(f"advert-other-digest-{i}", 32)}),
            ("other round", {"round": rnd + 1}),
            ("other site", {"site": site + "x"}),
        ):
            other = {**fields, **change}
            other_message = encode_ref(ADVERT_DOMAIN, *(other[k] for k in order))
            must_fail.append({"what": what, "fields": _hex(other), "message": other_message.hex()})
        cases.append(
            {
                "fields": _hex(fields),
                "message": message.hex(),
                "signature": signature.hex(),
                "must_fail": must_fail,
            }
        )
    return {"public_key": public.hex(), "cases": cases}


def _hex(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v.hex() if isinstance(v, bytes) else v for k, v in fields.items()}


def feasibility() -> list[dict[str, Any]]:
    rows = []
    for clip, precision, m in ((1.0, 16, 5), (0.05, 12, 3), (3.0, 10, 8)):
        # scale: the power of two with 2**(p-1) < clip * scale <= 2**p
        scale = 2.0 ** (precision - math.ceil(math.log2(clip)))
        while clip * scale > 2**precision:
            scale /= 2
        while clip * scale * 2 <= 2**precision:
            scale *= 2
        top = m * (math.floor(clip * scale) + 2)
        s0 = m * math.floor(0.3 * clip * scale)
        for label, s, ok in (
            ("at the bound", [s0, s0 + 2 * m, -(s0 + 2 * m)], True),
            ("one past the bound", [s0, s0 + 2 * m + 1, 0], False),
            ("one below minus the bound", [s0, 0, -(s0 + 2 * m) - 1], False),
            ("zero weight", [0, 2 * m, -2 * m], False),
            ("least weight", [1, 1 + 2 * m, -(1 + 2 * m)], True),
            ("negative weight", [-1, 0, 0], False),
            ("largest weight", [top, top + 2 * m, 0], True),
            ("weight past the largest", [top + 1, 0, 0], False),
        ):
            rows.append(
                {
                    "what": label,
                    "clip": clip,
                    "precision_bits": precision,
                    "summands": m,
                    "scale": scale,
                    "sum": s,
                    "feasible": ok,
                }
            )
    return rows


def main() -> None:
    doc = {
        "source": "tests/vectors/generate_secagg.py (no securefl code)",
        "thresholds": thresholds(),
        "cohort_thresholds": cohort_thresholds(),
        "adverts": adverts(),
        "feasibility": feasibility(),
    }
    (HERE / "secagg.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
