"""One site's well-formed but unexpected ciphertext drops that site, never the server.

Each case is sent by a cheating roster site that signs what it sends, so only
the structural checks on load stand between it and the sum. Every preset is
tried; the round completes with the honest sites (or aborts cleanly when too
few remain), and the server driver keeps running.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tenseal as ts
import tenseal.sealapi as sealapi
from conftest import FEDERATION, MAX_WEIGHT, Kit, craft_vector, seal_bytes
from test_he_aggregate import signed_update

from securefl.aggregation.base import (
    AggregateResult,
    AggregationMode,
    RoundContext,
    ServerAggregator,
    SiteAggregator,
)
from securefl.config import RoundConfig, StrategyConfig
from securefl.errors import WireError
from securefl.he import PRESETS, HEPreset, SecretContext, decrypt_aggregate
from securefl.he._codec import encrypt_chunks, num_chunks
from securefl.params import ParamSpec
from securefl.runtime.encrypted_model import EncryptedAggregatesModel
from securefl.runtime.server import ServerDriver
from securefl.strategy import make_strategy
from securefl.wire import SERVER, Envelope

D = 5000  # two or three chunks in every preset: the bad chunk is the last one
COHORT = ("a", "b", "c", "d")  # c sends the bad chunk; three honest summands remain


def _rc(cohort: tuple[str, ...] = COHORT, round_id: int = 1) -> RoundContext:
    return RoundContext(
        federation=FEDERATION, round=round_id, cohort=cohort, dimension=D, max_weight=100.0
    )


def _other_preset(preset: HEPreset) -> HEPreset:
    """Same scheme if another preset has it, else any other preset."""
    same = [p for p in PRESETS.values() if p.scheme == preset.scheme and p != preset]
    return same[0] if same else next(p for p in PRESETS.values() if p != preset)


def _last_len(preset: HEPreset) -> int:
    return D - (num_chunks(preset, D) - 1) * preset.slots


def _fresh(kit: Kit) -> Any:
    ctx, n = kit.secret.tenseal, _last_len(kit.secret.preset)
    if kit.secret.preset.scheme == "bfv":
        return ts.bfv_vector(ctx, [1] * n)
    return ts.ckks_vector(ctx, [0.001] * n)


def _scale(kit: Kit) -> float | None:
    bits = kit.secret.preset.scale_bits
    return None if bits is None else 2.0**bits


def _bad_last(kit: Kit, case: str, tmp: Path) -> bytes:
    preset, scheme = kit.secret.preset, kit.secret.preset.scheme
    n = _last_len(preset)
    good = encrypt_chunks(kit.secret, np.zeros(n, np.int64 if scheme == "bfv" else np.float64))[0]
    if case == "truncated":
        return good[: len(good) // 2]
    if case == "random":
        return os.urandom(len(good))
    if case == "other-parameters":
        other = SecretContext.generate(_other_preset(preset))
        dtype = np.int64 if other.preset.scheme == "bfv" else np.float64
        return encrypt_chunks(other, np.zeros(n, dtype))[0]
    ct = _fresh(kit).ciphertext()[0]
    if case == "other-scale":
        if scheme == "ckks":
            return bytes(ts.ckks_vector(kit.secret.tenseal, [0.001] * n, scale=2.0**30).serialize())
        ct.scale = 2.0**30
    elif case == "size-3":
        ct.resize(kit.secret.tenseal.seal_context().data, 3)
    elif case == "lower-level":
        evaluator = sealapi.Evaluator(kit.secret.tenseal.seal_context().data)
        if len(preset.coeff_mod_bit_sizes) < 3:
            pytest.skip(f"{preset.name} has a single data level")
        evaluator.mod_switch_to_next_inplace(ct)
    elif case == "two-ciphertexts":
        raw = seal_bytes(ct, tmp)
        return craft_vector(scheme, [raw, raw], [n - 1, 1], _scale(kit))
    return craft_vector(scheme, [seal_bytes(ct, tmp)], [n], _scale(kit))


def _bad_chunks(kit: Kit, case: str, tmp: Path) -> list[bytes]:
    """A whole update whose chunks are honest but for the last one."""
    scheme = kit.secret.preset.scheme
    good = encrypt_chunks(kit.secret, np.zeros(D, np.int64 if scheme == "bfv" else np.float64))
    return [*good[:-1], _bad_last(kit, case, tmp)]


CASES = [
    "other-scale",
    "other-parameters",
    "lower-level",
    "size-3",
    "two-ciphertexts",
    "truncated",
    "random",
]


@pytest.mark.parametrize("case", CASES)
def test_a_malformed_ciphertext_drops_its_sender_and_the_round_completes(
    any_kit: Kit, case: str, tmp_path: Path
) -> None:
    kit, rc = any_kit, _rc()
    gen = np.random.default_rng(3)  # test data only
    xs = {k: (gen.normal(size=D) * 0.01).astype(np.float32) for k in "abd"}
    server = kit.server_mode().server(rc)
    for site in "ab":
        server.handle(kit.site_mode(site).site(rc, site).submit(xs[site], 50.0)[0])
    server.handle(signed_update(kit, "c", rc, _bad_chunks(kit, case, tmp_path)))
    server.handle(kit.site_mode("d").site(rc, "d").submit(xs["d"], 50.0)[0])
    assert isinstance(server.rejected["c"], WireError)
    res = server.result
    assert res is not None and res.survivors == ("a", "b", "d")
    mean = decrypt_aggregate(
        kit.secret,
        res.encrypted_sum,
        res.total_weight,
        D,
        roster=kit.roster,
        federation=FEDERATION,
        max_weight=MAX_WEIGHT,
    )
    tol = kit.secret.clip / max(kit.secret.preset.quant_levels, 1) * 10 + 1e-6
    assert np.max(np.abs(mean - (xs["a"] + xs["b"] + xs["d"]) / 3)) < tol


def _driver(kit: Kit, cohort: tuple[str, ...], mode: AggregationMode | None = None) -> ServerDriver:
    driver = ServerDriver(
        federation=FEDERATION,
        mode=mode or kit.server_mode(),
        strategy=make_strategy(StrategyConfig(name="fedavg")),
        model=EncryptedAggregatesModel(np.zeros(D, np.float32), StrategyConfig(name="fedavg")),
        spec=ParamSpec.from_dict({"names": ["w"], "shapes": [[D]], "dtypes": ["float32"]}),
        rounds=RoundConfig(max_rounds=3, min_sites=2),
        max_weight=100.0,
        expected_sites=cohort,
    )
    for site in cohort:
        driver.handle(
            Envelope(
                federation=FEDERATION,
                round=0,
                stage="fed/hello",
                sender=site,
                receiver=SERVER,
                payload=b"",
            )
        )
    return driver


@pytest.mark.parametrize("case", ["other-scale", "size-3", "random"])
def test_the_server_driver_survives_and_drops_the_sender(
    any_kit: Kit, case: str, tmp_path: Path
) -> None:
    kit = any_kit
    driver = _driver(kit, COHORT)
    rc = _rc(round_id=driver.current_round)
    for site in "abd":
        driver.handle(kit.site_mode(site).site(rc, site).submit(np.zeros(D, np.float32), 10.0)[0])
    driver.handle(signed_update(kit, "c", rc, _bad_chunks(kit, case, tmp_path)))
    summary = driver.history[-1]
    assert summary.status == "aggregated" and summary.survivors == ("a", "b", "d")
    # too few left: the next round aborts cleanly, and the driver still runs
    driver.advance()
    rc2 = _rc(round_id=driver.current_round)
    assert rc2.round == 2
    for site in "ad":
        driver.handle(kit.site_mode(site).site(rc2, site).submit(np.zeros(D, np.float32), 10.0)[0])
    driver.handle(signed_update(kit, "b", rc2, _bad_chunks(kit, case, tmp_path)))
    driver.handle(signed_update(kit, "c", rc2, _bad_chunks(kit, case, tmp_path)))
    assert [h.status for h in driver.history] == ["aggregated", "abandoned"]
    driver.advance()
    assert driver.current_round == 3  # the federation goes on


class _Exploding(ServerAggregator):
    """A mode whose handling of site c's message fails with a native library's ValueError."""

    def __init__(self, ctx: RoundContext) -> None:
        self.ctx, self.sent, self.gone = ctx, set[str](), set[str]()

    def handle(self, envelope: Envelope) -> list[Envelope]:
        if envelope.sender == "c":
            raise ValueError("scale mismatch")
        self.sent.add(envelope.sender)
        return []

    def on_departure(self, site_id: str) -> list[Envelope]:
        self.gone.add(site_id)
        return []

    def on_deadline(self) -> list[Envelope]:
        return []

    @property
    def result(self) -> AggregateResult | None:
        if self.sent | self.gone >= set(self.ctx.cohort):
            return AggregateResult(
                total_weight=1.0, survivors=tuple(sorted(self.sent)), encrypted_sum=b""
            )
        return None

    @property
    def stage(self) -> str:
        return "x"


class _ExplodingMode(AggregationMode):
    name = "he"
    hides_updates = True

    def site(self, ctx: RoundContext, site_id: str) -> SiteAggregator:
        raise NotImplementedError

    def server(self, ctx: RoundContext) -> ServerAggregator:
        return _Exploding(ctx)


def test_any_error_in_one_peers_message_drops_that_peer_not_the_server(bfv_kit: Kit) -> None:
    driver = _driver(bfv_kit, ("a", "b", "c"), _ExplodingMode())
    for site in ("c", "a", "b"):
        driver.handle(
            Envelope(
                federation=FEDERATION,
                round=1,
                stage="he/update",
                sender=site,
                receiver=SERVER,
                payload=b"",
            )
        )
    assert driver.history[-1].status == "aggregated"
    assert driver.history[-1].survivors == ("a", "b")


def test_an_unexpected_library_error_rejects_only_the_sender(
    bfv_kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Belt and braces behind the load checks: whatever TenSEAL raises is the sender's fault."""
    import securefl.he._server as server_module

    real = server_module.load_chunks
    poison = _bad_chunks(bfv_kit, "random", Path("."))

    def load(context: Any, chunks: Any, dimension: int) -> Any:
        if chunks == poison:
            raise ValueError("a native library's complaint")
        return real(context, chunks, dimension)

    monkeypatch.setattr(server_module, "load_chunks", load)
    rc = _rc()
    server = bfv_kit.server_mode().server(rc)
    for site in "abd":
        server.handle(
            bfv_kit.site_mode(site).site(rc, site).submit(np.zeros(D, np.float32), 5.0)[0]
        )
    server.handle(signed_update(bfv_kit, "c", rc, poison))
    assert isinstance(server.rejected["c"], WireError)
    assert server.result is not None and server.result.survivors == ("a", "b", "d")
