"""The bytes a site signs and commits to, rebuilt here with ``struct`` after docs/mask.md.

Each signed message opens with its own domain (``securefl/mask/<purpose>/vN``)
after the context ``securefl/signed/v1``, so a signature made for one
purpose (a consistency vote) never verifies as another, and another
implementation of the protocol signs the same bytes. The reference encoder
below is the one of ``tests/vectors/generate_secagg.py`` (typed,
length-prefixed fields), written without securefl. See ``docs/mutation.md``
("secagg/ modules").
"""

from __future__ import annotations

import hashlib
import struct

from securefl.secagg import _messages as m

CONTEXT = b"securefl/signed/v1"


def _ref(*fields: str | int | bytes) -> bytes:
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


def test_the_consistency_vote_signs_its_domain_run_round_and_sorted_list() -> None:
    survivors = ("site-00", "site-02", "site-03")
    got = m.consistency_message("fed", 7, survivors, run="run-a")
    assert got == _ref("securefl/mask/consistency/v2", "fed", 7, "run-a", *survivors)


def test_the_self_seed_commitment_is_sha256_of_its_domain_and_fields() -> None:
    seed = bytes(range(32))
    want = hashlib.sha256(_ref("securefl/mask/self-seed-commit/v1", "fed", 7, "site-01", seed))
    assert m.commit_self_seed("fed", 7, "site-01", seed) == want.digest()


def test_the_key_advert_signs_its_domain_and_every_field() -> None:
    c_pk, s_pk, commit, digest = (bytes([i]) * 32 for i in range(1, 5))
    got = m.advert_message("fed", 7, "site-01", c_pk, s_pk, commit, digest)
    assert got == _ref("securefl/mask/advert/v2", "fed", 7, "site-01", c_pk, s_pk, commit, digest)
