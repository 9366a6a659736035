from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from securefl.aggregation.base import RoundContext
from securefl.errors import AbortError, ConfigError, DataError, IntegrityError, WireError
from securefl.he import (
    CKKS_N4096,
    CKKS_N8192,
    HEServerMode,
    HESiteMode,
    SecretContext,
    decrypt_aggregate,
)
from securefl.he._codec import ChunkSum, decrypt_chunks, encrypt_chunks, load_chunks
from securefl.wire import Envelope, pack, unpack

D = 5000  # two chunks in every preset


def _rc(cohort: tuple[str, ...], d: int = D, min_sites: int = 2) -> RoundContext:
    return RoundContext(
        federation="f", round=3, cohort=cohort, dimension=d, max_weight=100.0, min_sites=min_sites
    )


def _updates(cohort: tuple[str, ...], d: int = D) -> dict[str, Any]:
    gen = np.random.default_rng(42)  # test data only; no key material
    return {k: (gen.normal(size=d) * 0.01).astype(np.float32) for k in cohort}


def _envelopes(
    secret: SecretContext, rc: RoundContext, xs: dict[str, Any], ws: dict[str, float]
) -> dict[str, Envelope]:
    mode = HESiteMode(secret)
    return {k: mode.site(rc, k).submit(xs[k], ws[k])[0] for k in xs}


def _mean(xs: dict[str, Any], ws: dict[str, float]) -> Any:
    total = sum(ws[k] for k in xs)
    return sum(ws[k] * xs[k].astype(np.float64) for k in xs) / total


def _run(secret: SecretContext, rc: RoundContext, envs: list[Envelope]) -> Any:
    server = HEServerMode(secret.public_context_bytes()).server(rc)
    for env in envs:
        server.handle(env)
    return server


def _aggregate(
    secret: SecretContext, rc: RoundContext, xs: dict[str, Any], ws: dict[str, float]
) -> Any:
    """The server half after every site in ``xs`` has submitted its update."""
    return _run(secret, rc, list(_envelopes(secret, rc, xs, ws).values()))


def _two_of_three(secret: SecretContext) -> tuple[Any, dict[str, Any], dict[str, float]]:
    """A round of cohort a, b, c in which only a and b submit: (server, updates, weights)."""
    cohort = ("a", "b", "c")
    xs, ws = _updates(cohort), {"a": 1.0, "b": 2.0, "c": 3.0}
    return _aggregate(secret, _rc(cohort), {k: xs[k] for k in "ab"}, ws), xs, ws


def test_ckks_mean_matches_plaintext_within_bound(ckks_secret: SecretContext) -> None:
    cohort = ("a", "b", "c")
    xs, ws = _updates(cohort), {"a": 10.0, "b": 50.0, "c": 100.0}
    rc = _rc(cohort)
    res = _aggregate(ckks_secret, rc, xs, ws).result
    assert res.weighted_sum is None and res.total_weight == 160.0
    mean = decrypt_aggregate(ckks_secret, res.encrypted_sum, res.total_weight, D)
    ref = _mean(xs, ws)
    assert np.max(np.abs(mean - ref)) < 1e-6 * np.max(np.abs(ref))


def test_ckks_mean_of_real_model_updates(ckks_secret: SecretContext) -> None:
    torch.manual_seed(0)

    def net() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(30, 40), torch.nn.ReLU(), torch.nn.Linear(40, 5))

    base = net()
    theta0 = torch.nn.utils.parameters_to_vector(base.parameters()).detach()
    xs = {}
    for k in ("a", "b"):
        local = net()
        local.load_state_dict(base.state_dict())
        opt = torch.optim.SGD(local.parameters(), lr=0.1)
        loss = local(torch.randn(16, 30)).pow(2).mean()
        loss.backward()
        opt.step()
        theta = torch.nn.utils.parameters_to_vector(local.parameters()).detach()
        xs[k] = (theta - theta0).numpy().astype(np.float32)
    d = theta0.numel()
    ws = {"a": 3.0, "b": 7.0}
    rc = _rc(("a", "b"), d=d)
    res = _aggregate(ckks_secret, rc, xs, ws).result
    mean = decrypt_aggregate(ckks_secret, res.encrypted_sum, res.total_weight, d)
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


def test_bfv_mean_within_quantization_bound(bfv_secret: SecretContext) -> None:
    cohort = ("a", "b", "c")
    xs, ws = _updates(cohort), {"a": 20.0, "b": 30.0, "c": 100.0}
    rc = _rc(cohort)
    res = _aggregate(bfv_secret, rc, xs, ws).result
    mean = decrypt_aggregate(bfv_secret, res.encrypted_sum, res.total_weight, D)
    # each site rounds by less than one level: |error| < n·clip/L · max_weight/Σw
    bound = 3 * bfv_secret.clip / bfv_secret.preset.quant_levels * 100.0 / 150.0
    assert np.max(np.abs(mean - _mean(xs, ws))) < bound


@pytest.mark.parametrize("secret_name", ["bfv_secret", "ckks_secret"])
def test_bad_inputs_are_dropped_and_round_goes_on(
    secret_name: str, request: pytest.FixtureRequest
) -> None:
    secret: SecretContext = request.getfixturevalue(secret_name)
    cohort = ("a", "b", "c", "d", "e", "f")
    rc = _rc(cohort)
    xs, ws = _updates(cohort), dict.fromkeys(cohort, 10.0)
    envs = _envelopes(secret, rc, {k: xs[k] for k in ("a", "b")}, ws)
    other_key = SecretContext.generate(secret.preset, clip=secret.clip)
    # another parameter set: another scheme for BFV, a larger ring for CKKS
    other_params = SecretContext.generate(
        CKKS_N4096 if secret.preset.scheme == "bfv" else CKKS_N8192
    )
    good = unpack(envs["a"].payload)
    garbage = dict(good, chunks=[b"garbage" * 10, b"\x00" * 64])
    few = dict(good, chunks=good["chunks"][:1])
    foreign = unpack(_envelopes(other_key, rc, {"d": xs["d"]}, ws)["d"].payload)
    wrong_params = dict(good, chunks=encrypt_chunks(other_params, np.zeros(D)))

    def env(site: str, payload: dict[str, Any]) -> Envelope:
        return Envelope(
            federation="f",
            round=3,
            stage="he/update",
            sender=site,
            receiver="server",
            payload=pack(payload),
        )

    server = _run(
        secret,
        rc,
        [
            envs["a"],
            envs["b"],
            env("c", garbage),
            env("d", foreign),
            env("e", few),
            env("f", wrong_params),
        ],
    )
    assert isinstance(server.rejected["c"], WireError)
    assert isinstance(server.rejected["d"], IntegrityError)
    assert isinstance(server.rejected["e"], WireError)
    assert "chunks" in str(server.rejected["e"])
    assert isinstance(server.rejected["f"], WireError)
    res = server.result
    assert res.survivors == ("a", "b")
    mean = decrypt_aggregate(secret, res.encrypted_sum, res.total_weight, D)
    assert np.max(np.abs(mean - _mean({k: xs[k] for k in "ab"}, ws))) < 1e-4


def test_dropout_is_not_summed(ckks_secret: SecretContext) -> None:
    server, xs, ws = _two_of_three(ckks_secret)
    assert server.result is None
    server.on_deadline()
    res = server.result
    assert res.survivors == ("a", "b") and res.total_weight == 3.0
    mean = decrypt_aggregate(ckks_secret, res.encrypted_sum, res.total_weight, D)
    assert np.allclose(mean, _mean({k: xs[k] for k in "ab"}, ws), rtol=0, atol=1e-6)


def test_a_departed_site_is_not_waited_for(ckks_secret: SecretContext) -> None:
    server, _, _ = _two_of_three(ckks_secret)
    assert server.result is None
    server.on_departure("c")  # no deadline needed
    assert server.result is not None and server.result.survivors == ("a", "b")


def test_min_cohort_enforced(ckks_secret: SecretContext) -> None:
    cohort = ("a", "b", "c")
    rc = _rc(cohort, min_sites=2)
    xs, ws = _updates(cohort), dict.fromkeys(cohort, 1.0)
    server = _aggregate(ckks_secret, rc, {"a": xs["a"]}, ws)
    server.on_deadline()
    assert server.stage == "aborted"
    with pytest.raises(AbortError, match="at least 2"):
        _ = server.result
    with pytest.raises(ConfigError, match="min_sites"):
        HEServerMode(ckks_secret.public_context_bytes()).server(_rc(cohort, min_sites=1))


def test_sites_refuse_to_decrypt_a_single_update(ckks_secret: SecretContext) -> None:
    rc = _rc(("a", "b"))
    xs, ws = _updates(("a", "b")), {"a": 1.0, "b": 1.0}
    blob = _aggregate(ckks_secret, rc, xs, ws)
    obj = unpack(blob.result.encrypted_sum)
    obj["summands"] = 1
    with pytest.raises(AbortError):
        decrypt_aggregate(ckks_secret, pack(obj), 1.0, D)


def test_ckks_magnitude_that_could_wrap_is_refused(ckks_secret: SecretContext) -> None:
    rc = _rc(("a", "b"))
    big = np.full(D, 3000.0, dtype=np.float32)
    with pytest.raises(DataError, match="wrap"):
        HESiteMode(ckks_secret).site(rc, "a").submit(big, 100.0)
