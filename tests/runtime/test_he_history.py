"""he mode's model history: FedAdam replayed at the sites, sent incrementally, hash-chained.

The server plays the adversary: it skips an aggregate, swaps two, or hands
two sites different histories; each must be caught by a site.
"""

import hashlib

import numpy as np
import pytest

from securefl.aggregation import AggregateResult, RoundContext
from securefl.config import StrategyConfig
from securefl.errors import IntegrityError
from securefl.hazmat.sign import SigningKey
from securefl.he import CKKS_N4096, HEServerMode, HESiteMode, SecretContext
from securefl.runtime import messages as m
from securefl.runtime._site_round import round_digest
from securefl.runtime.encrypted_model import EncryptedAggregatesModel, EncryptedModelDecoder
from securefl.runtime.global_model import PlainGlobalModel
from securefl.strategy import make_strategy
from securefl.wire import pack, unpack

D = 16
SITES = ("a", "b", "c", "d")
KEYS = {s: SigningKey.generate() for s in SITES}
ROSTER = {s: k.public_bytes() for s, k in KEYS.items()}
MAX_WEIGHT = 10.0
FEDADAM = StrategyConfig(name="fedadam")


@pytest.fixture(scope="module")
def secret():
    return SecretContext.generate(CKKS_N4096)


@pytest.fixture()
def modes(secret):
    """Each site's own mode for one test (it records the rounds the site took part in)."""
    return {
        s: HESiteMode(
            secret, site_id=s, signing_key=KEYS[s], max_weight=MAX_WEIGHT, processes=False
        )
        for s in SITES
    }


def _decoder(modes, site, config=FEDADAM):
    return EncryptedModelDecoder(
        modes[site], roster=ROSTER, federation="f", strategy=config, min_sites=3
    )


def _aggregate(secret, modes, round_id, updates, digests=None):
    """The server's sum of ``updates`` (site -> (vector, weight)), each site signing its digest."""
    cohort = tuple(sorted(updates))
    public = secret.signed_public_context(federation="f", maker="a", signing_key=KEYS["a"])
    server_ctx = RoundContext(
        federation="f", round=round_id, cohort=cohort, dimension=D, max_weight=MAX_WEIGHT
    )
    server = HEServerMode(public, roster=ROSTER, federation="f").server(server_ctx)
    for site, (vector, weight) in updates.items():
        ctx = RoundContext(
            federation="f",
            round=round_id,
            cohort=cohort,
            dimension=D,
            max_weight=MAX_WEIGHT,
            round_digest=(digests or {}).get(site, b""),
        )
        (env,) = modes[site].site(ctx, site).submit(vector, weight)
        server.handle(env)
    assert server.result is not None
    return server.result


def _updates(round_id, sites="abc"):
    rng = np.random.default_rng(round_id)  # test data, not a security use
    return {
        s: (rng.uniform(-0.05, 0.05, D).astype(np.float32), float(1 + i))
        for i, s in enumerate(sites)
    }


def _round_start_digest(model_payload, decoder):
    start = m.RoundStart(
        cohort=SITES,
        model=model_payload,
        spec={},
        max_weight=MAX_WEIGHT,
        min_sites=3,
        run="0f",
        config={},
    )
    return round_digest(start.to_bytes(), start, decoder)


def test_plain_and_he_reach_the_same_model_under_fedadam(secret, modes):
    """Given the same aggregates, the he sites' replay equals the plain server's FedAdam."""
    theta0 = np.linspace(-0.5, 0.5, D).astype(np.float32)
    plain = PlainGlobalModel(theta0)
    he = EncryptedAggregatesModel(theta0, FEDADAM)
    plain_strategy, he_strategy = make_strategy(FEDADAM), make_strategy(FEDADAM)
    decoder = _decoder(modes, "d")
    for r in range(1, 5):
        updates = _updates(r)
        weighted = sum(w * v.astype(np.float64) for v, w in updates.values())
        total = sum(w for _, w in updates.values())
        result = AggregateResult(
            total_weight=total, survivors=tuple(updates), weighted_sum=weighted
        )
        plain.apply(result, plain_strategy, r)
        he.apply(_aggregate(secret, modes, r, updates), he_strategy, r)
        replayed = decoder(he.payload_for("d"), D)
        he.acknowledge("d")
        # CKKS error is ~1e-7 relative; FedAdam moves each coordinate by ~server_lr per round
        np.testing.assert_allclose(replayed, plain.plaintext(), atol=1e-4)
    assert not np.allclose(plain.plaintext(), theta0, atol=0.05)  # it did move


def _history(secret, modes, rounds):
    model = EncryptedAggregatesModel(np.zeros(D, np.float32), FEDADAM)
    strategy = make_strategy(FEDADAM)
    for r in range(1, rounds + 1):
        model.apply(_aggregate(secret, modes, r, _updates(r)), strategy, r)
    return model


def test_each_site_gets_only_what_it_has_not_acknowledged_and_a_newcomer_all(secret, modes):
    model = EncryptedAggregatesModel(np.zeros(D, np.float32), FEDADAM)
    strategy = make_strategy(FEDADAM)
    steady, dropped = _decoder(modes, "c"), _decoder(modes, "d")
    sizes = []
    for r in range(1, 6):
        payload = model.payload_for("c")
        sizes.append(len(payload))
        steady(payload, D)
        model.acknowledge("c")
        if r <= 2:  # d takes rounds 1 and 2, then never answers again
            dropped(model.payload_for("d"), D)
            model.acknowledge("d")
        model.apply(_aggregate(secret, modes, r, _updates(r)), strategy, r)
    latest = unpack(model.payload_for("c"))
    assert latest["start"] == 4 and len(latest["aggregates"]) == 1  # the new one, not five
    # flat, not growing: the fifth round start is about the size of the second
    assert sizes[-1] < 1.5 * sizes[1] and len(model.payload()) > 4 * sizes[1]
    late = unpack(model.payload_for("d"))
    assert late["start"] == 1 and len(late["aggregates"]) == 5 - 1  # all it lacks, from 1
    np.testing.assert_array_equal(steady(model.payload_for("c"), D), dropped(pack(late), D))
    model.rejoin("d", b"")  # d says hello again (it may have restarted): the whole history
    assert unpack(model.payload_for("d"))["start"] == 0
    newcomer = _decoder(modes, "d")
    np.testing.assert_array_equal(newcomer(model.payload(), D), steady(model.payload(), D))
    assert newcomer.history_digest() == steady.history_digest()


def test_a_site_refuses_a_history_with_a_gap(secret, modes):
    """The server skips aggregate 2 for a site that holds only aggregate 1."""
    model = _history(secret, modes, 3)
    decoder = _decoder(modes, "d")
    obj = unpack(model.payload())
    decoder(pack({**obj, "aggregates": obj["aggregates"][:1]}), D)  # the site holds 1
    skipped = pack({**obj, "theta0": None, "start": 2, "aggregates": obj["aggregates"][2:]})
    with pytest.raises(IntegrityError, match="skipped"):
        decoder(skipped, D)
    fresh = _decoder(modes, "c")  # a site holding nothing must be sent θ₀ and everything
    with pytest.raises(IntegrityError, match="skipped"):
        fresh(skipped, D)


def test_a_site_refuses_a_reordered_or_rewritten_overlap(secret, modes):
    model = _history(secret, modes, 3)
    decoder = _decoder(modes, "d")
    obj = unpack(model.payload())
    aggs = obj["aggregates"]
    decoder(pack({**obj, "aggregates": aggs[:2]}), D)  # the site holds 1 and 2
    swapped = pack({**obj, "theta0": None, "start": 1, "aggregates": [aggs[2], aggs[1]]})
    with pytest.raises(IntegrityError, match="rewrote"):
        decoder(swapped, D)
    reweighted = pack(
        {**obj, "theta0": None, "start": 1, "aggregates": [dict(aggs[1], weight=2.0)]}
    )
    with pytest.raises(IntegrityError, match="rewrote"):
        decoder(reweighted, D)
    # a site that has not yet applied them refuses the swap too: rounds must increase
    other = _decoder(modes, "c")
    other(pack({**obj, "aggregates": aggs[:1]}), D)
    with pytest.raises(IntegrityError, match="replayed"):
        other(swapped, D)


def test_a_server_forking_the_history_is_caught_at_the_next_aggregate(secret, modes):
    """Site d (absent from round 2) is given another genuine round-2 sum than c.

    Neither can tell alone; their round-3 uploads sign different chain heads,
    so the sum of round 3 holding both is refused by each of them.
    """
    model = _history(secret, modes, 2)
    alternative = _aggregate(secret, modes, 2, _updates(2, sites="abd"))
    honest = unpack(model.payload())
    forked = {
        **honest,
        "aggregates": [
            honest["aggregates"][0],
            {"sum": alternative.encrypted_sum, "weight": alternative.total_weight},
        ],
    }
    c, d = _decoder(modes, "c"), _decoder(modes, "d")
    # d's own round-2 upload is in the alternative: that alone is no fork it can see
    c(pack(honest), D)
    d(pack(forked), D)
    assert c.history_digest() != d.history_digest()
    digest_c = _round_start_digest(pack(honest), c)
    digest_d = _round_start_digest(pack(forked), d)
    third = _aggregate(
        secret,
        modes,
        3,
        _updates(3, sites="abcd"),
        digests={"a": digest_c, "b": digest_c, "c": digest_c, "d": digest_d},
    )
    model.apply(third, make_strategy(FEDADAM), 3)
    tail = unpack(model.payload())["aggregates"][2:]
    for decoder, seen in ((c, honest), (d, forked)):
        with pytest.raises(IntegrityError, match=r"different rounds|another round"):
            decoder(pack({**seen, "theta0": None, "start": 2, "aggregates": tail}), D)


def test_sites_sent_different_slices_of_one_history_sign_the_same_round(secret, modes):
    """No false alarm: an incremental payload and the whole one give one chain head."""
    model = _history(secret, modes, 3)
    whole = _decoder(modes, "c")
    part = _decoder(modes, "d")
    obj = unpack(model.payload())
    part(pack({**obj, "aggregates": obj["aggregates"][:1]}), D)
    inc = pack({**obj, "theta0": None, "start": 1, "aggregates": obj["aggregates"][1:]})
    np.testing.assert_array_equal(whole(model.payload(), D), part(inc, D))
    assert _round_start_digest(model.payload(), whole) == _round_start_digest(inc, part)
    assert _round_start_digest(model.payload(), whole) != hashlib.sha256(b"").digest()
