"""The neighbourhood round's BLS roster and aggregate: cases the mutation run of
``secagg/_multisig.py`` asked for.

The roster is read from a file a federation's operator provisions, so a
malformed one (a site left out, an entry of the wrong shape or type) must be
refused with one clear :class:`ConfigError`, never a ``KeyError`` or
``TypeError`` from deep inside. The server checks an honest round's
consistency signatures with one aggregate check, not one pairing per site;
and each unmask request it builds carries the signers and an aggregate that
the receiving site's own check accepts. See ``docs/mutation.md``
("secagg/_multisig.py").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from securefl.errors import ConfigError
from securefl.hazmat import bls
from securefl.hazmat.sign import SigningKey
from securefl.secagg import MaskConfig, _multisig
from securefl.secagg import _messages as m

NAMES = tuple(f"site-{i:02d}" for i in range(30))
KEYS = {s: SigningKey.from_private_bytes(bytes([i + 1]) * 32) for i, s in enumerate(NAMES)}
ROSTER = {s: _multisig.bls_entry(k) for s, k in KEYS.items()}
MESSAGE = b"one survivor list"
LOCAL = MaskConfig(
    clip=1.0, complete_graph_max=3, dropout_rate=0.05, corrupt_rate=0.0, neighbourhood=True
)


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """Proofs and parsed keys are cached per process; each test checks its own."""
    _multisig._possession_ok.cache_clear()
    bls._public_point.cache_clear()
    yield
    _multisig._possession_ok.cache_clear()
    bls._public_point.cache_clear()


def _sign(sites: list[str], message: bytes = MESSAGE) -> dict[str, bytes]:
    return {s: bls.BlsKey.from_identity(KEYS[s]).sign(message) for s in sites}


# -- the roster ----------------------------------------------------------------------


def test_the_provisioned_roster_is_accepted() -> None:
    assert _multisig.checked_bls_roster(ROSTER, NAMES) == {s: e[0] for s, e in ROSTER.items()}


def test_a_site_missing_from_the_bls_roster_is_refused_with_a_config_error() -> None:
    """An old roster (or one cut by hand) that lacks a cohort site's BLS key."""
    short = {s: e for s, e in ROSTER.items() if s != NAMES[7]}
    with pytest.raises(ConfigError, match=NAMES[7]):
        _multisig.checked_bls_roster(short, NAMES)
    with pytest.raises(ConfigError):
        _multisig.checked_bls_roster(None, NAMES)


_PUBLIC, _PROOF = ROSTER[NAMES[0]]


@pytest.mark.parametrize(
    "entry",
    [
        (bytearray(_PUBLIC), _PROOF),
        (_PUBLIC, bytearray(_PROOF)),
        (list(_PUBLIC), _PROOF),
        (_PUBLIC, list(_PROOF)),
        (_PUBLIC.hex(), _PROOF),
        (_PUBLIC, None),
        [_PUBLIC, _PROOF],
        (_PUBLIC, _PROOF, _PROOF),
        (_PUBLIC,),
        _PUBLIC,
    ],
    ids=[
        "public bytearray",
        "proof bytearray",
        "public list",
        "proof list",
        "public hex",
        "no proof",
        "list entry",
        "three fields",
        "one field",
        "bare key",
    ],
)
def test_a_roster_entry_of_the_wrong_shape_or_type_is_refused_with_a_config_error(
    entry: Any,
) -> None:
    roster: dict[str, Any] = {**ROSTER, NAMES[0]: entry}
    with pytest.raises(ConfigError, match=repr(NAMES[0])):
        _multisig.checked_bls_roster(roster, NAMES)


def test_two_sites_sharing_one_bls_key_are_refused() -> None:
    """A colluder copies an honest site's key and proof (the proof verifies for it)."""
    roster = {**ROSTER, NAMES[1]: ROSTER[NAMES[0]]}
    with pytest.raises(ConfigError, match="share one BLS key"):
        _multisig.checked_bls_roster(roster, NAMES)


def test_a_site_whose_roster_key_is_not_its_own_refuses_to_sign() -> None:
    """The roster lists another key (or none) for this site: no aggregate could count it."""
    me, other = NAMES[0], NAMES[1]
    keys = {s: e[0] for s, e in ROSTER.items()}
    signer = _multisig.NeighbourhoodSigner(KEYS[me], me, keys)
    bls.verify_one(keys[me], MESSAGE, signer.sign(MESSAGE))
    with pytest.raises(ConfigError, match=repr(me)):
        _multisig.NeighbourhoodSigner(KEYS[me], me, {**keys, me: keys[other]})
    with pytest.raises(ConfigError, match=repr(me)):
        _multisig.NeighbourhoodSigner(KEYS[me], me, {s: k for s, k in keys.items() if s != me})


# -- the server's check of the consistency signatures --------------------------------


def test_an_honest_set_of_signatures_is_checked_with_one_aggregate_not_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every signature good: all accepted, no signature checked alone (O(1) pairings).

    With one bad signature the fallback checks each alone and names exactly
    the bad one.
    """
    keys = {s: e[0] for s, e in ROSTER.items()}
    alone: list[str] = []
    verify_one = bls.verify_one

    def counted(public: bytes, message: bytes, signature: bytes) -> None:
        alone.append(public.hex())
        verify_one(public, message, signature)

    monkeypatch.setattr(bls, "verify_one", counted)
    sigs = _sign(list(NAMES[:6]))
    assert _multisig.split_valid(sigs, keys, MESSAGE) == (sigs, {})
    assert alone == []
    bad = {**sigs, NAMES[2]: _sign([NAMES[2]], b"another list")[NAMES[2]]}
    good, refused = _multisig.split_valid(bad, keys, MESSAGE)
    assert good == {s: sig for s, sig in sigs.items() if s != NAMES[2]}
    assert set(refused) == {NAMES[2]}
    assert len(alone) == 6
    assert _multisig.split_valid({}, keys, MESSAGE) == ({}, {})


# -- the unmask requests the server builds --------------------------------------------


def test_each_unmask_request_carries_signers_and_an_aggregate_the_site_accepts() -> None:
    """Without extra fields for a signer (none given here), its request is still built.

    Each request decodes, names the signers as a cohort bitmap, carries the
    holders' part of the dropped list, and passes the receiving site's own
    check of the aggregate.
    """
    plan = LOCAL.plan(federation="fed", round_id=1, cohort=NAMES)
    assert plan.local and not plan.complete
    keys = _multisig.checked_bls_roster(ROSTER, NAMES)
    dropped = [plan.order[0]]
    survivors = [s for s in NAMES if s not in dropped]
    signers = sorted(survivors)
    sigs = _sign(signers)
    bitmap = m.pack_members(NAMES, survivors)
    requests = _multisig.unmask_requests(plan, bitmap, dropped, sigs, {})
    assert set(requests) == set(signers)
    for site, payload in requests.items():
        body = m.decode(m.UNMASK_REQUEST, payload, cohort_size=len(NAMES))
        assert "peers" not in body
        assert body["dropped"] == plan.shown_to(site, dropped)
        assert m.unpack_members(NAMES, body["signers"]) == signers
        _multisig.check_aggregate(
            message=MESSAGE,
            cohort=NAMES,
            survivors=survivors,
            holders=plan.holders(site),
            keys=keys,
            signers_field=body["signers"],
            aggregate=body["aggregate"],
            threshold=plan.threshold,
            quorum=plan.quorum,
        )
