from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from conftest import FEDERATION, MAX_WEIGHT, Kit, make_kit

from securefl.aggregation.base import RoundContext
from securefl.errors import AbortError, ConfigError, IntegrityError, WireError
from securefl.he import (
    CKKS_N4096,
    CKKS_N8192,
    SecretContext,
    decrypt_aggregate,
)
from securefl.he._codec import ChunkSum, decrypt_chunks, encrypt_chunks, load_chunks
from securefl.he._messages import encode_update
from securefl.he._trust import chunks_digest, update_message
from securefl.wire import Envelope, pack, unpack

D = 5000  # two chunks in every preset


def _rc(cohort: tuple[str, ...], d: int = D, min_sites: int = 2) -> RoundContext:
    return RoundContext(
        federation=FEDERATION,
        round=3,
        cohort=cohort,
        dimension=d,
        max_weight=100.0,
        min_sites=min_sites,
    )


def _updates(cohort: tuple[str, ...], d: int = D) -> dict[str, Any]:
    gen = np.random.default_rng(42)  # test data only; no key material
    return {k: (gen.normal(size=d) * 0.01).astype(np.float32) for k in cohort}


def _envelopes(
    kit: Kit, rc: RoundContext, xs: dict[str, Any], ws: dict[str, float]
) -> dict[str, Envelope]:
    return {k: kit.site_mode(k).site(rc, k).submit(xs[k], ws[k])[0] for k in xs}


def signed_update(
    kit: Kit, site: str, rc: RoundContext, chunks: list[bytes], weight: float = 10.0
) -> Envelope:
    """What a cheating roster site sends: any chunks, correctly signed by itself."""
    secret = kit.secret
    message = update_message(
        federation=rc.federation,
        round_id=rc.round,
        site=site,
        key_id=secret.key_id,
        preset=secret.preset.name,
        dimension=rc.dimension,
        weight=weight,
        max_weight=rc.max_weight,
        round_digest=rc.round_digest,
        digest=chunks_digest(chunks),
    )
    payload = encode_update(
        preset=secret.preset.name,
        key_id=secret.key_id,
        weight=weight,
        dimension=rc.dimension,
        round_digest=rc.round_digest,
        chunks=chunks,
        signature=kit.keys[site].sign(message),
    )
    return Envelope(
        federation=rc.federation,
        round=rc.round,
        stage="he/update",
        sender=site,
        receiver="server",
        payload=payload,
    )


def decrypt(kit: Kit, res: Any, d: int = D) -> Any:
    return decrypt_aggregate(
        kit.secret,
        res.encrypted_sum,
        res.total_weight,
        d,
        roster=kit.roster,
        federation=FEDERATION,
        max_weight=MAX_WEIGHT,
        min_sites=3,
    )


def _mean(xs: dict[str, Any], ws: dict[str, float]) -> Any:
    total = sum(ws[k] for k in xs)
    return sum(ws[k] * xs[k].astype(np.float64) for k in xs) / total


def _run(kit: Kit, rc: RoundContext, envs: list[Envelope]) -> Any:
    server = kit.server_mode().server(rc)
    for env in envs:
        server.handle(env)
    return server


def _aggregate(kit: Kit, rc: RoundContext, xs: dict[str, Any], ws: dict[str, float]) -> Any:
    """The server half after every site in ``xs`` has submitted its update."""
    return _run(kit, rc, list(_envelopes(kit, rc, xs, ws).values()))


def _three_of_four(kit: Kit) -> tuple[Any, dict[str, Any], dict[str, float]]:
    """A round of cohort a, b, c, d in which only a, b and c submit: (server, updates, weights)."""
    cohort = ("a", "b", "c", "d")
    xs, ws = _updates(cohort), {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    return _aggregate(kit, _rc(cohort), {k: xs[k] for k in "abc"}, ws), xs, ws


def test_ckks_mean_matches_plaintext_within_bound(ckks_kit: Kit) -> None:
    cohort = ("a", "b", "c")
    xs, ws = _updates(cohort), {"a": 10.0, "b": 50.0, "c": 100.0}
    res = _aggregate(ckks_kit, _rc(cohort), xs, ws).result
    assert res.weighted_sum is None and res.total_weight == 160.0
    mean = decrypt(ckks_kit, res)
    ref = _mean(xs, ws)
    assert np.max(np.abs(mean - ref)) < 1e-6 * np.max(np.abs(ref))


def test_ckks_mean_of_real_model_updates(ckks_kit: Kit) -> None:
    torch.manual_seed(0)

    def net() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(30, 40), torch.nn.ReLU(), torch.nn.Linear(40, 5))

    base = net()
    theta0 = torch.nn.utils.parameters_to_vector(base.parameters()).detach()
    xs = {}
    for k in ("a", "b", "c"):
        local = net()
        local.load_state_dict(base.state_dict())
        opt = torch.optim.SGD(local.parameters(), lr=0.1)
        loss = local(torch.randn(16, 30)).pow(2).mean()
        loss.backward()
        opt.step()
        theta = torch.nn.utils.parameters_to_vector(local.parameters()).detach()
        xs[k] = (theta - theta0).numpy().astype(np.float32)
    d = theta0.numel()
    ws = {"a": 3.0, "b": 7.0, "c": 5.0}
    res = _aggregate(ckks_kit, _rc(("a", "b", "c"), d=d), xs, ws).result
    mean = decrypt(ckks_kit, res, d)
    ref = _mean(xs, ws)
    assert np.max(np.abs(mean - ref)) < 1e-6 * np.max(np.abs(ref))


def test_bfv_sum_is_exact_on_quantized_values(bfv_secret: SecretContext) -> None:
    preset = bfv_secret.preset
    levels = preset.quant_levels
    gen = np.random.default_rng(1)
    ints = [gen.integers(-levels, levels + 1, size=D) for _ in range(4)]
    total = ChunkSum()
    for q in ints:
        total.add(load_chunks(bfv_secret.public(), encrypt_chunks(bfv_secret, q), D))
    got = decrypt_chunks(bfv_secret, total.serialize(), D)[:D]
    t = preset.plain_modulus
    assert t is not None
    centred = np.where(got > t // 2, got - t, got)
    assert np.array_equal(centred, np.sum(ints, axis=0))


def test_bfv_mean_within_quantization_bound(bfv_kit: Kit) -> None:
    cohort = ("a", "b", "c")
    xs, ws = _updates(cohort), {"a": 20.0, "b": 30.0, "c": 100.0}
    res = _aggregate(bfv_kit, _rc(cohort), xs, ws).result
    mean = decrypt(bfv_kit, res)
    # each site rounds by less than one level: |error| < n·clip/L · max_weight/Σw
    bound = 3 * bfv_kit.secret.clip / bfv_kit.secret.preset.quant_levels * 100.0 / 150.0
    assert np.max(np.abs(mean - _mean(xs, ws))) < bound


@pytest.mark.parametrize("kit_name", ["bfv_kit", "ckks_kit"])
def test_bad_inputs_are_dropped_and_round_goes_on(
    kit_name: str, request: pytest.FixtureRequest
) -> None:
    kit: Kit = request.getfixturevalue(kit_name)
    secret = kit.secret
    cohort = ("a", "b", "c", "d", "e", "f", "g")
    rc = _rc(cohort)
    xs, ws = _updates(cohort), dict.fromkeys(cohort, 10.0)
    envs = _envelopes(kit, rc, {k: xs[k] for k in ("a", "b", "g")}, ws)
    # another parameter set: another scheme for BFV, a larger ring for CKKS
    other_params = SecretContext.generate(
        CKKS_N4096 if secret.preset.scheme == "bfv" else CKKS_N8192
    )
    good = unpack(envs["a"].payload)
    # each cheating site signs what it sends: only the checks after the signature can stop it
    server = _run(
        kit,
        rc,
        [
            envs["a"],
            envs["b"],
            envs["g"],
            signed_update(kit, "c", rc, [b"garbage" * 10, b"\x00" * 64]),
            signed_update(kit, "e", rc, good["chunks"][:1]),
            signed_update(kit, "f", rc, encrypt_chunks(other_params, np.zeros(D))),
            # labelled with another key id (a site provisioned with the wrong kit)
            Envelope(
                federation=FEDERATION,
                round=3,
                stage="he/update",
                sender="d",
                receiver="server",
                payload=pack(dict(good, key_id=bytes(16))),
            ),
        ],
    )
    assert isinstance(server.rejected["c"], WireError)
    assert isinstance(server.rejected["d"], IntegrityError)
    assert isinstance(server.rejected["e"], WireError)
    assert "chunks" in str(server.rejected["e"])
    assert isinstance(server.rejected["f"], WireError)
    res = server.result
    assert res.survivors == ("a", "b", "g")
    mean = decrypt(kit, res)
    assert np.max(np.abs(mean - _mean({k: xs[k] for k in "abg"}, ws))) < 1e-4


def test_dropout_is_not_summed(ckks_kit: Kit) -> None:
    server, xs, ws = _three_of_four(ckks_kit)
    assert server.result is None
    server.on_deadline()
    res = server.result
    assert res.survivors == ("a", "b", "c") and res.total_weight == 6.0
    mean = decrypt(ckks_kit, res)
    assert np.allclose(mean, _mean({k: xs[k] for k in "abc"}, ws), rtol=0, atol=1e-6)


def test_a_departed_site_is_not_waited_for(ckks_kit: Kit) -> None:
    server, _, _ = _three_of_four(ckks_kit)
    assert server.result is None
    server.on_departure("d")  # no deadline needed
    assert server.result is not None and server.result.survivors == ("a", "b", "c")


def test_min_cohort_enforced(ckks_kit: Kit) -> None:
    """No sum of fewer than max(min_sites, 3) uploads is released (two reveal each other)."""
    cohort = ("a", "b", "c")
    rc = _rc(cohort, min_sites=2)
    xs, ws = _updates(cohort), dict.fromkeys(cohort, 1.0)
    server = _aggregate(ckks_kit, rc, {"a": xs["a"], "b": xs["b"]}, ws)
    server.on_deadline()
    assert server.stage == "aborted"
    with pytest.raises(AbortError, match="at least 3"):
        _ = server.result
    big = ("a", "b", "c", "d", "e")
    server = _aggregate(
        ckks_kit, _rc(big, min_sites=5), {k: xs.get(k, xs["a"]) for k in "abcd"}, ws | {"d": 1.0}
    )
    server.on_deadline()
    with pytest.raises(AbortError, match="at least 5"):
        _ = server.result
    with pytest.raises(ConfigError, match="min_sites"):
        ckks_kit.server_mode().server(_rc(cohort, min_sites=1))


def test_sites_refuse_to_decrypt_a_single_update(ckks_kit: Kit) -> None:
    """A server that drops summands (or repeats one) to pass one update off as a sum."""
    xs, ws = _updates(("a", "b", "c")), {"a": 1.0, "b": 1.0, "c": 1.0}
    res = _aggregate(ckks_kit, _rc(("a", "b", "c")), xs, ws).result
    obj = unpack(res.encrypted_sum)
    for uploads in (obj["uploads"][:1], [obj["uploads"][0]] * 3, obj["uploads"][:2]):
        with pytest.raises(AbortError):
            decrypt_aggregate(
                ckks_kit.secret,
                pack(dict(obj, uploads=uploads)),
                float(len(uploads)),
                D,
                roster=ckks_kit.roster,
                federation=FEDERATION,
                max_weight=MAX_WEIGHT,
            )


def test_ckks_values_beyond_clip_are_clipped_so_sums_cannot_wrap(ckks_kit: Kit) -> None:
    rc = _rc(("a", "b", "c"))
    big = {k: np.full(D, 3000.0, dtype=np.float32) for k in "abc"}
    res = _aggregate(ckks_kit, rc, big, dict.fromkeys("abc", 100.0)).result
    # each site sent (w/max_w)·Δ clipped to clip = 1: the mean is clip·max_w/w = 1
    assert np.allclose(decrypt(ckks_kit, res), 1.0, atol=1e-6)
    with pytest.raises(ConfigError, match="clip"):
        SecretContext.generate(CKKS_N4096, clip=CKKS_N4096.max_abs_sum)


def test_an_other_kit_is_a_different_federation(ckks_kit: Kit) -> None:
    """Same keys, other identities: the server refuses the context and every upload."""
    stranger = make_kit(ckks_kit.secret)
    with pytest.raises(IntegrityError):
        ckks_kit.server_mode().__class__(
            stranger.signed_public, roster=ckks_kit.roster, federation=FEDERATION
        )
