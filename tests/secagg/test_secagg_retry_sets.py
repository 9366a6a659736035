"""Which t-sets the unmask retry tries: every one up to 64, else 64 fresh random ones.

mask.md's claim: corrupted unmask shares are routed around by trying every
t-set when there are at most 64 of them, else 64 drawn at random (one bad
share among 20 at t = 14 is then missed with probability 0.7^64). These
tests pin both branches and the boundary between them.
"""

from __future__ import annotations

import math
import secrets

from securefl.hazmat import shamir
from securefl.secagg._unmask import _MAX_RETRIES, _retry, _t_sets


def test_exactly_64_t_sets_are_all_tried_once() -> None:
    ids = list(range(1, 65))
    assert math.comb(len(ids), 1) == _MAX_RETRIES == 64
    tried = list(_t_sets(ids, 1))
    assert sorted(tried) == [(i,) for i in ids]  # every set, each once: no random repeats


def test_beyond_64_t_sets_64_random_t_subsets_are_drawn_fresh_each_time() -> None:
    ids = list(range(1, 21))
    t = 14
    assert math.comb(20, 14) > _MAX_RETRIES
    draws = [list(_t_sets(ids, t)) for _ in range(2)]
    for tried in draws:
        assert len(tried) == _MAX_RETRIES
        for s in tried:
            assert len(s) == t and len(set(s)) == t and set(s) <= set(ids)
            assert list(s) == sorted(s)
        assert len(set(tried)) > 1  # not one set repeated
    assert draws[0] != draws[1]  # random: 64 of 38 760 sets, never the same sequence


def test_one_bad_share_among_20_at_t_14_is_routed_around() -> None:
    """The random branch end to end: the secret comes back (fails with probability ~2^-33)."""
    ids = list(range(1, 21))
    secret = secrets.token_bytes(32)
    shares = shamir.split(secret, threshold=14, share_ids=ids)
    bad = ids[0]  # the lowest id: lexicographic sets would all contain it
    y = (int.from_bytes(shares[bad], "big") + 1) % shamir.PRIME
    shares[bad] = y.to_bytes(shamir.SHARE_LEN, "big")
    assert _retry(14, "v", shares, lambda _v, got: got == secret) == secret
