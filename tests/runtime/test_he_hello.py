"""What a ``fed/hello`` costs the he server, and what the site it comes from is sent.

A roster site plays the adversary: it repeats hellos after the run ended,
each naming less of the history than the last, to make the server encode
the history (up to the message limit) again per small request. The bound
must not cost honest sites their recovery: a site that restarted with its
state lost still gets the whole history, and a site that kept its state
(a rejoin after a transport error) gets only what it lacks, which its hash
chain accepts.
"""

import numpy as np
import pytest

from securefl.aggregation import AggregateResult, PlainMode, RoundContext
from securefl.config import RoundConfig, StrategyConfig
from securefl.errors import WireError
from securefl.hazmat.sign import SigningKey
from securefl.he import CKKS_N4096, HEServerMode, HESiteMode, SecretContext
from securefl.params import ParamSpec
from securefl.runtime import messages as m
from securefl.runtime.encrypted_model import (
    EncryptedAggregatesModel,
    EncryptedModelDecoder,
    _chain_next,
    _chain_start,
    _strategy_fields,
)
from securefl.runtime.server import ServerDriver
from securefl.strategy import FedAvg, make_strategy
from securefl.wire import SERVER, Envelope, unpack

D = 16
SITES = ("a", "b", "c")
KEYS = {s: SigningKey.generate() for s in SITES}
ROSTER = {s: k.public_bytes() for s, k in KEYS.items()}
SPEC = ParamSpec(names=("w",), shapes=((D,),), dtypes=("float32",))
MAX_WEIGHT = 10.0
FEDAVG = StrategyConfig(name="fedavg")


@pytest.fixture(scope="module")
def secret():
    return SecretContext.generate(CKKS_N4096)


def _mode(secret, site):
    return HESiteMode(secret, site_id=site, signing_key=KEYS[site], max_weight=MAX_WEIGHT,
                      processes=False)  # fmt: skip


def _decoder(secret, site="a"):
    return EncryptedModelDecoder(
        _mode(secret, site), roster=ROSTER, federation="f", strategy=FEDAVG, min_sites=3
    )


def _aggregate(secret, round_id):
    """The encrypted sum of one update per site, each signed by its site."""
    public = secret.signed_public_context(federation="f", maker="a", signing_key=KEYS["a"])
    ctx = RoundContext(federation="f", round=round_id, cohort=SITES, dimension=D,
                       max_weight=MAX_WEIGHT)  # fmt: skip
    server = HEServerMode(public, roster=ROSTER, federation="f").server(ctx)
    rng = np.random.default_rng(round_id)  # test data, not a security use
    for site in SITES:
        update = rng.uniform(-0.05, 0.05, D).astype(np.float32)
        (env,) = _mode(secret, site).site(ctx, site).submit(update, 2.0)
        server.handle(env)
    assert server.result is not None
    return server.result


def _hello(site, payload=b""):
    return Envelope(federation="f", round=0, stage=m.HELLO, sender=site, receiver=SERVER,
                    payload=payload)  # fmt: skip


def _driver(model, rounds=10):
    return ServerDriver(
        federation="f", mode=PlainMode(), strategy=FedAvg(), model=model, spec=SPEC,
        rounds=RoundConfig(max_rounds=rounds, min_sites=3), max_weight=MAX_WEIGHT,
        expected_sites=SITES, admit=SITES,
    )  # fmt: skip


def _history(model):
    """What a payload of ``model`` holds: (first aggregate sent, how many)."""
    obj = unpack(model)
    return obj["start"], len(obj["aggregates"])


def _finish_model(envs):
    (env,) = envs
    assert env.stage == m.FINISH
    return m.Finish.from_bytes(env.payload).model


def test_a_site_that_kept_its_history_is_sent_only_what_it_lacks(secret):
    """Rejoining with its chain head, a site is sent the aggregates past it, and applies them."""
    model = EncryptedAggregatesModel(np.zeros(D, np.float32), FEDAVG)
    kept, fresh = _decoder(secret), _decoder(secret)
    for r in (1, 2):
        model.apply(_aggregate(secret, r), make_strategy(FEDAVG), r)
    kept(model.payload_for("a"), D)
    model.rejoin("a", kept.hello())  # a transport error: a rejoins, holding two aggregates
    for r in (3, 4, 5):
        model.apply(_aggregate(secret, r), make_strategy(FEDAVG), r)
    suffix = model.payload_for("a")
    assert _history(suffix) == (2, 3)  # the three it lacks, not five
    assert len(suffix) < 0.7 * len(model.payload())
    np.testing.assert_array_equal(kept(suffix, D), fresh(model.payload(), D))
    assert kept.history_digest() == fresh.history_digest()


def test_a_claim_that_is_not_this_history_gets_the_whole_of_it(secret):
    """A head of another history, or past this one, starts the site over from θ₀."""
    model = EncryptedAggregatesModel(np.zeros(D, np.float32), FEDAVG)
    other = EncryptedAggregatesModel(np.ones(D, np.float32), FEDAVG)
    elsewhere = _decoder(secret)
    for r in (1, 2):
        aggregate = _aggregate(secret, r)
        model.apply(aggregate, make_strategy(FEDAVG), r)
        other.apply(aggregate, make_strategy(FEDAVG), r)
    elsewhere(other.payload(), D)
    model.rejoin("a", elsewhere.hello())
    assert _history(model.payload_for("a")) == (0, 2)
    head = _chain_start(np.zeros(D, np.float32), _strategy_fields(FEDAVG))
    model.rejoin("a", m.Hello(aggregates=3, head=head).to_bytes())
    assert _history(model.payload_for("a")) == (0, 2)
    with pytest.raises(WireError):
        model.rejoin("a", b"\x81\xa1x\x01")


def test_an_honest_site_that_lost_its_state_recovers_the_history_after_many_hellos(secret):
    """Every site got the last aggregate alone in the final message; then a restarted
    with its state lost and said hello 50 times. One reply carries the whole history, and
    a decoder starting from nothing reaches the model of a site that kept its state."""
    model = EncryptedAggregatesModel(np.zeros(D, np.float32), FEDAVG)
    kept = _decoder(secret, "b")
    for r in (1, 2):
        model.apply(_aggregate(secret, r), make_strategy(FEDAVG), r)
    for site in SITES:  # each answered round 2, holding aggregates 1 and 2
        payload = model.payload_for(site)
        model.acknowledge(site)
    kept(payload, D)
    model.apply(_aggregate(secret, 3), make_strategy(FEDAVG), 3)
    driver = ServerDriver(
        federation="f", mode=PlainMode(), strategy=FedAvg(), model=model, spec=SPEC,
        rounds=RoundConfig(max_rounds=3, min_sites=3), max_weight=MAX_WEIGHT, admit=SITES,
    )  # fmt: skip
    for site in ("a", "b"):  # they rejoin holding what they acknowledged (too few to open)
        assert driver.handle(_hello(site, kept.hello())) == []
    final = {e.receiver: m.Finish.from_bytes(e.payload).model for e in driver.stop("done")}
    assert {s: _history(p) for s, p in final.items()} == {"a": (2, 1), "b": (2, 1)}
    expected = kept(final["b"], D)
    replies = [driver.handle(_hello("a")) for _ in range(50)]
    sent = [_finish_model(r) for r in replies if r]
    assert [_history(p) for p in sent] == [(0, 3)]
    np.testing.assert_array_equal(_decoder(secret, "a")(sent[0], D), expected)


def test_a_site_restarting_mid_run_gets_the_whole_history_at_the_next_round(secret):
    """However many hellos it sends between rounds, the next round start holds it all."""
    model = EncryptedAggregatesModel(np.zeros(D, np.float32), FEDAVG)
    for r in (1, 2):
        model.apply(_aggregate(secret, r), make_strategy(FEDAVG), r)
    for site in SITES:
        model.payload_for(site)
        model.acknowledge(site)
    driver = _driver(model)
    for _ in range(20):
        driver.handle(_hello("b"))
    starts = [driver.handle(_hello(s)) for s in ("a", "c")][-1]
    (start,) = [e for e in starts if e.receiver == "b" and e.stage == m.ROUND_START]
    payload = m.RoundStart.from_bytes(start.payload).model
    assert _history(payload) == (0, 2)
    reference = _decoder(secret, "c")(model.payload(), D)
    np.testing.assert_array_equal(_decoder(secret, "b")(payload, D), reference)


def test_hellos_naming_ever_less_of_the_history_cost_at_most_two_copies():
    """After the run, a names a shorter valid prefix each time (it knows the public heads):
    one copy per claim would encode a quadratic amount; the server encodes at most a
    suffix and the whole history."""
    size, rounds = 100_000, 8
    model = EncryptedAggregatesModel(np.zeros(D, np.float32), FEDAVG)
    heads = [_chain_start(np.zeros(D, np.float32), _strategy_fields(FEDAVG))]
    for r in range(1, rounds + 1):  # the ciphertext bytes are opaque to the server
        model.apply(AggregateResult(total_weight=3.0, survivors=SITES,
                                    encrypted_sum=bytes([r]) * size), FedAvg(), r)  # fmt: skip
        heads.append(_chain_next(heads[-1], {"sum": bytes([r]) * size, "weight": 3.0}))
    driver = _driver(model, rounds=rounds)
    driver.stop("the run ended")
    encoded = 0
    for held in range(rounds, -1, -1):
        claim = m.Hello(aggregates=held, head=heads[held]).to_bytes()
        for _ in range(3):
            encoded += sum(len(e.payload) for e in driver.handle(_hello("a", claim)))
    assert rounds * size <= encoded <= 2 * rounds * size + 4096


def test_a_rejoining_site_names_what_its_decoder_holds(secret):
    """The site driver's hello after a transport error carries its chain head."""
    from securefl.runtime.site_driver import SiteDriver

    model = EncryptedAggregatesModel(np.zeros(D, np.float32), FEDAVG)
    kept = _decoder(secret)
    for r in (1, 2):
        model.apply(_aggregate(secret, r), make_strategy(FEDAVG), r)
    kept(model.payload_for("a"), D)
    model.acknowledge("a")
    model.apply(_aggregate(secret, 3), make_strategy(FEDAVG), 3)
    site = SiteDriver(name="a", federation="f", decode_model=kept)
    (hello,) = site.resume()
    model.rejoin("a", hello.payload)
    assert _history(model.payload_for("a")) == (2, 1)
