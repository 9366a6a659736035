"""A cheating server (or a cheating site) is caught: honest sites abort, bad input is dropped."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from secagg_driver import (
    QUICK_D,
    Federation,
    Run,
    Tamper,
    chain,
    edit_payload,
    quick_round,
    round_digest,
)

from securefl.hazmat import shamir
from securefl.secagg import MaskConfig
from securefl.secagg import _messages as m
from securefl.secagg._unmask import _retry
from securefl.wire import Envelope, unpack

TARGET = "site-01"
DIGEST = round_digest(1, QUICK_D, 100.0)
"""What every site of a quick round 1 received."""


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return Federation(tmp_path, 5, MaskConfig(clip=1.0))


def rewrite(stage: str, fn: Callable[[dict[str, Any]], None]) -> Tamper:
    """Let the server edit the payload of ``stage`` it sends to the honest ``TARGET``."""
    return edit_payload(stage, fn, receiver=TARGET)


def assert_target_aborted(result: Run, match: str) -> None:
    assert TARGET in result.aborted, "the honest site did not abort"
    assert match in str(result.aborted[TARGET])
    assert m.UNMASK not in result.sent_by[TARGET]


# -- unmask request -----------------------------------------------------------


def _move_to_dropped(b: dict[str, Any], who: str) -> None:
    b["survivors"].remove(who)
    b["dropped"].append(who)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda b: _move_to_dropped(b, TARGET), "lists this site as dropped"),
        (lambda b: b["dropped"].append("mallory"), "unknown ids"),
        (lambda b: b["survivors"].__setitem__(1, b["survivors"][0]), "twice"),
        (lambda b: _move_to_dropped(b, "site-03"), "whose masked input it received"),
        (lambda b: b["survivors"].remove("site-03"), "differs from the one this site signed"),
        (
            lambda b: [b["signatures"].pop(s) for s in list(b["signatures"])[:3]],
            "below the threshold",
        ),
    ],
    ids=[
        "self-dropped",
        "unknown",
        "duplicated",
        "survivor-dropped",
        "changed-list",
        "few-signatures",
    ],
)
def test_site_aborts_on_a_cheating_unmask_request(fed: Federation, edit: Any, match: str) -> None:
    assert_target_aborted(quick_round(fed, rewrite(m.UNMASK_REQUEST, edit)), match)


def test_site_aborts_when_signatures_cover_different_lists(fed: Federation) -> None:
    def edit(b: dict[str, Any]) -> None:
        # site-03 genuinely signed a *different* list the server showed it.
        forged = fed.keys["site-03"].sign(
            m.consistency_message("fed", 1, ("site-01", "site-03", "site-04"), run="")
        )
        b["signatures"]["site-03"] = forged

    assert_target_aborted(quick_round(fed, rewrite(m.UNMASK_REQUEST, edit)), "do not all sign")


def test_consistency_signature_from_a_non_survivor_aborts(fed: Federation) -> None:
    def edit(b: dict[str, Any]) -> None:
        b["signatures"]["site-02"] = b["signatures"]["site-00"]

    result = quick_round(
        fed, rewrite(m.UNMASK_REQUEST, edit), drop={"site-02": "mask/masked-input"}
    )
    assert_target_aborted(result, "not a survivor")


def test_a_second_unmask_request_is_refused(fed: Federation) -> None:
    seen: list[Envelope] = []

    def keep(env: Envelope) -> Envelope:
        if env.stage == m.UNMASK_REQUEST and env.receiver == TARGET:
            seen.append(env)
        return env

    result = quick_round(fed, keep)
    assert result.result is not None
    from securefl.errors import ProtocolError

    site = fed.sites(fed.ctx(1, QUICK_D))[TARGET]
    with pytest.raises(ProtocolError):
        site.handle(seen[0])  # a fresh half never reached that stage


# -- consistency and masked-input requests --------------------------------------


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda b: b["survivors"].remove(TARGET), "left this site out"),
        (
            lambda b: b.update(
                survivors=b["survivors"][:2]
                if TARGET in b["survivors"][:2]
                else [TARGET, "site-00"]
            ),
            "below the threshold",
        ),
        (lambda b: b["survivors"].__setitem__(0, TARGET), "twice"),
    ],
    ids=["omits-site", "below-threshold", "duplicated"],
)
def test_site_aborts_on_a_cheating_consistency_request(
    fed: Federation, edit: Any, match: str
) -> None:
    assert_target_aborted(quick_round(fed, rewrite(m.CONSISTENCY_REQUEST, edit)), match)


def test_consistency_request_naming_a_site_without_shares_aborts(fed: Federation) -> None:
    def edit(b: dict[str, Any]) -> None:
        b["survivors"].append("site-04")

    result = quick_round(fed, rewrite(m.CONSISTENCY_REQUEST, edit), drop={"site-04": "mask/share"})
    assert_target_aborted(result, "unknown or unexpected")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda b: b["shares"].pop("site-00"), "withheld"),
        (lambda b: b["senders"].__setitem__(1, b["senders"][0]), "twice"),
        (lambda b: b.update(senders=[TARGET, "site-00"]), "below the threshold"),
    ],
    ids=["withheld-share", "duplicated", "below-threshold"],
)
def test_site_aborts_on_a_cheating_masked_input_request(
    fed: Federation, edit: Any, match: str
) -> None:
    assert_target_aborted(quick_round(fed, rewrite(m.MASKED_INPUT_REQUEST, edit)), match)


# -- share ciphertexts --------------------------------------------------------


def _flip(ct: bytes) -> bytes:
    return ct[:20] + bytes([ct[20] ^ 1]) + ct[21:]


def test_tampered_share_ciphertext_aborts(fed: Federation) -> None:
    def edit(b: dict[str, Any]) -> None:
        b["shares"]["site-00"] = _flip(b["shares"]["site-00"])

    assert_target_aborted(quick_round(fed, rewrite(m.MASKED_INPUT_REQUEST, edit)), "did not verify")


def test_rerouted_share_ciphertext_aborts(fed: Federation) -> None:
    def edit(b: dict[str, Any]) -> None:  # present site-00's share as site-02's
        b["shares"]["site-00"], b["shares"]["site-02"] = (
            b["shares"]["site-02"],
            b["shares"]["site-00"],
        )

    assert_target_aborted(quick_round(fed, rewrite(m.MASKED_INPUT_REQUEST, edit)), "did not verify")


def test_share_meant_for_another_site_aborts(fed: Federation) -> None:
    stolen: dict[str, bytes] = {}

    def steal(env: Envelope) -> Envelope:  # site-00's share ciphertext for site-02
        if env.stage == m.SHARE and env.sender == "site-00":
            stolen["ct"] = unpack(env.payload)["shares"]["site-02"]
        return env

    def edit(b: dict[str, Any]) -> None:  # handed to the target as site-00's share for it
        b["shares"]["site-00"] = stolen["ct"]

    tamper = chain(steal, rewrite(m.MASKED_INPUT_REQUEST, edit))
    assert_target_aborted(quick_round(fed, tamper), "did not verify")


def test_replayed_share_from_an_earlier_round_aborts(fed: Federation) -> None:
    old: dict[str, bytes] = {}

    def record(env: Envelope) -> Envelope:
        if env.stage == m.MASKED_INPUT_REQUEST and env.receiver == TARGET:
            old["ct"] = unpack(env.payload)["shares"]["site-00"]
        return env

    assert quick_round(fed, record, round_id=1).result is not None

    def edit(b: dict[str, Any]) -> None:
        b["shares"]["site-00"] = old["ct"]

    assert_target_aborted(
        quick_round(fed, rewrite(m.MASKED_INPUT_REQUEST, edit), round_id=2), "did not verify"
    )


# -- key adverts --------------------------------------------------------------


def test_swapped_public_keys_abort(fed: Federation) -> None:
    def edit(b: dict[str, Any]) -> None:
        a, c = b["adverts"]["site-00"], b["adverts"]["site-02"]
        a["c_pk"], c["c_pk"] = c["c_pk"], a["c_pk"]

    assert_target_aborted(quick_round(fed, rewrite(m.SHARE_REQUEST, edit)), "is not signed by")


def test_server_substituting_its_own_key_aborts(fed: Federation) -> None:
    from securefl.hazmat.keys import KeyPair

    def edit(b: dict[str, Any]) -> None:
        b["adverts"]["site-00"]["c_pk"] = KeyPair.generate().public_bytes()

    assert_target_aborted(quick_round(fed, rewrite(m.SHARE_REQUEST, edit)), "is not signed by")


def test_altered_own_advert_aborts(fed: Federation) -> None:
    from securefl.hazmat.keys import KeyPair

    def edit(b: dict[str, Any]) -> None:
        adv = b["adverts"][TARGET]
        adv["c_pk"] = KeyPair.generate().public_bytes()
        adv["sig"] = fed.keys[TARGET].sign(
            m.advert_message(  # even with a valid signature
                "fed", 1, TARGET, adv["c_pk"], adv["s_pk"], adv["commit"], adv["digest"]
            )
        )

    assert_target_aborted(quick_round(fed, rewrite(m.SHARE_REQUEST, edit)), "altered")


def _signed_advert(fed: Federation, site: str, c_pk: bytes, s_pk: bytes) -> dict[str, bytes]:
    commit = bytes(32)
    sig = fed.keys[site].sign(m.advert_message("fed", 1, site, c_pk, s_pk, commit, DIGEST))
    return {"c_pk": c_pk, "s_pk": s_pk, "commit": commit, "digest": DIGEST, "sig": sig}


def test_duplicated_public_key_in_adverts_aborts(fed: Federation) -> None:
    def edit(b: dict[str, Any]) -> None:  # a colluding site-00 copies the target's keys
        mine = b["adverts"][TARGET]
        b["adverts"]["site-00"] = _signed_advert(fed, "site-00", mine["c_pk"], mine["s_pk"])

    assert_target_aborted(quick_round(fed, rewrite(m.SHARE_REQUEST, edit)), "same public key")


def test_wrong_size_public_key_aborts(fed: Federation) -> None:
    def edit(b: dict[str, Any]) -> None:
        b["adverts"]["site-00"]["c_pk"] = b["adverts"]["site-00"]["c_pk"][:31]

    assert_target_aborted(quick_round(fed, rewrite(m.SHARE_REQUEST, edit)), "invalid")


LOW_ORDER = [
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
]


@pytest.mark.parametrize("point", LOW_ORDER, ids=["zero", "one", "order-8"])
def test_low_order_public_key_aborts_the_site(fed: Federation, point: bytes) -> None:
    def edit(b: dict[str, Any]) -> None:
        good = b["adverts"]["site-00"]
        b["adverts"]["site-00"] = _signed_advert(fed, "site-00", point, good["s_pk"])

    assert_target_aborted(quick_round(fed, rewrite(m.SHARE_REQUEST, edit)), "invalid")


@pytest.mark.parametrize("point", LOW_ORDER, ids=["zero", "one", "order-8"])
def test_server_drops_a_site_advertising_a_low_order_key(fed: Federation, point: bytes) -> None:
    def edit(body: dict[str, Any]) -> None:
        body.update(_signed_advert(fed, "site-04", point, body["s_pk"]))

    result = quick_round(fed, edit_payload(m.ADVERTISE, edit, sender="site-04"))
    assert "site-04" in result.server.rejected and not result.aborted
    assert result.result is not None and "site-04" not in result.result.survivors


def test_server_drops_a_site_copying_another_sites_key(fed: Federation) -> None:
    copied: dict[str, bytes] = {}

    def record(env: Envelope) -> Envelope:
        if env.stage == m.ADVERTISE and env.sender == "site-00":
            copied["c_pk"] = unpack(env.payload)["c_pk"]
        return env

    def edit(body: dict[str, Any]) -> None:  # site-04 signs an advert with site-00's key
        body.update(_signed_advert(fed, "site-04", copied["c_pk"], body["s_pk"]))

    result = quick_round(fed, chain(record, edit_payload(m.ADVERTISE, edit, sender="site-04")))
    assert "site-04" in result.server.rejected
    assert result.result is not None and "site-04" not in result.result.survivors


# -- a cheating site at unmasking ---------------------------------------------


def _corrupt_unmask(site: str, kind: str) -> Tamper:
    """``site`` adds a fresh random offset (mod p) to every ``kind`` share it reveals.

    Random, not a fixed bit flip: two holders flipping the same bit the same
    way can cancel in the Lagrange sum (coefficients 3 and -3 for ids 1, 2),
    which would reconstruct the right secret and hide the corruption.
    """

    def edit(body: dict[str, Any]) -> None:
        for v, share in body[kind].items():
            y = int.from_bytes(share, "big")
            offset = 1 + secrets.randbelow(shamir.PRIME - 1)
            body[kind][v] = ((y + offset) % shamir.PRIME).to_bytes(shamir.SHARE_LEN, "big")

    return edit_payload(m.UNMASK, edit, sender=site)


@pytest.mark.parametrize("kind", ["b", "s"])
def test_corrupted_unmask_shares_are_caught_and_routed_around(tmp_path: Path, kind: str) -> None:
    fed = Federation(tmp_path, 6, MaskConfig(clip=1.0))  # t = 4: 5 responders leave a spare
    result = quick_round(
        fed, _corrupt_unmask("site-00", kind), drop={"site-04": "mask/masked-input"}
    )
    assert result.result is not None  # checked against the commitment / signed key, retried
    assert result.result.survivors == ("site-00", "site-01", "site-02", "site-03", "site-05")
    assert abs(result.result.total_weight - 5.0) <= 5 * 100.0 / 2**16


@pytest.mark.parametrize("bad", [1, 3, 5])
def test_a_corrupted_share_among_few_is_always_routed_around(bad: int) -> None:
    """With C(s, t) <= 64 t-sets the retry tries them all, so a lone bad share never aborts.

    5 shares, t = 4: exactly one t-set leaves out the bad share. Random
    draws would miss it with probability (4/5)^5 per secret; 20 secrets are
    each rebuilt and checked against their value, as the commitment check does.
    """
    for _ in range(20):
        secret = secrets.token_bytes(32)
        shares = shamir.split(secret, threshold=4, share_ids=[1, 2, 3, 4, 5])
        y = (int.from_bytes(shares[bad], "big") + 1) % shamir.PRIME
        shares[bad] = y.to_bytes(shamir.SHARE_LEN, "big")
        assert _retry(4, "v", shares, lambda _v, got: got == secret) == secret


def test_too_many_corrupted_shares_abort_rather_than_return_a_wrong_sum(tmp_path: Path) -> None:
    fed = Federation(tmp_path, 4, MaskConfig(clip=1.0))  # t = 3 of 4
    result = quick_round(
        fed, chain(_corrupt_unmask("site-00", "b"), _corrupt_unmask("site-01", "b"))
    )
    assert result.result is None and result.server_abort is not None
    assert "committed secret" in str(result.server_abort)


def test_survivor_also_listed_as_dropped_gets_no_second_share(fed: Federation) -> None:
    # The server keeps the survivor list intact (so the signatures still verify)
    # and adds a survivor to the dropped list: answered, it would hold both that
    # survivor's self-mask share and its key share, and so its unmasked input.
    result = quick_round(fed, rewrite(m.UNMASK_REQUEST, lambda b: b["dropped"].append("site-03")))
    assert TARGET in result.aborted
    assert m.UNMASK not in result.sent_by[TARGET]
    for raw in result.server_log:
        env = Envelope.from_bytes(raw)
        if env.stage == m.UNMASK:
            body = m.decode(m.UNMASK, env.payload, cohort_size=5)
            assert not set(body["b"]) & set(body["s"]), env.sender
