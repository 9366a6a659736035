"""Bad input from a site, bad configuration and round-id reuse are refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from secagg_driver import (
    QUICK_D,
    Federation,
    Tamper,
    edit_payload,
    quick_round,
    random_updates,
    run_round,
    site_names,
)

from securefl.errors import AbortError, ConfigError, OverflowRefusedError, ProtocolError
from securefl.hazmat.quantize import QuantizationParams
from securefl.secagg import (
    MaskConfig,
    MaskServerMode,
    MaskSiteMode,
    colluders_tolerated,
    dropouts_tolerated,
)
from securefl.secagg import _messages as m
from securefl.wire import Envelope, pack, unpack

D = QUICK_D


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return Federation(tmp_path, 5, MaskConfig(clip=1.0, bits=20))


def _env(
    stage: str,
    sender: str,
    *,
    receiver: str = "server",
    federation: str = "fed",
    round_id: int = 1,
    payload: bytes = b"",
) -> Envelope:
    return Envelope(
        federation=federation,
        round=round_id,
        stage=stage,
        sender=sender,
        receiver=receiver,
        payload=payload,
    )


def _out_of_ring(body: dict[str, Any]) -> None:
    y = bytearray(body["y"])
    y[2] |= 0x80  # bit 23 of element 0: outside Z_2^20
    body["y"] = bytes(y)


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b.update(y=b["y"][:-3]),
        lambda b: b.update(n=b["n"] - 1, y=b["y"][:-3]),
        lambda b: b.update(y=b["y"] + b"\x00\x00\x00"),
        _out_of_ring,
        lambda b: b.update(bits=32),
        lambda b: b.update(y="text"),
    ],
    ids=["short-body", "short-vector", "long", "outside-ring", "other-ring", "not-bytes"],
)
def test_bad_masked_input_drops_its_sender_and_the_round_recovers(
    fed: Federation, edit: Any
) -> None:
    run = quick_round(fed, edit_payload(m.MASKED_INPUT, edit, sender="site-02"))
    assert "site-02" in run.server.rejected
    assert run.result is not None and "site-02" not in run.result.survivors
    assert not run.aborted


def test_masked_input_of_20_bit_ring_travels_as_3_bytes(fed: Federation) -> None:
    run = quick_round(fed)
    sizes = [
        len(unpack(Envelope.from_bytes(raw).payload)["y"])
        for raw in run.server_log
        if Envelope.from_bytes(raw).stage == m.MASKED_INPUT
    ]
    assert sizes and all(s == 3 * (D + 1) for s in sizes)


def test_sixteen_bit_ring_travels_as_2_bytes(tmp_path: Path) -> None:
    fed = Federation(tmp_path, 4, MaskConfig(clip=1.0, precision_bits=8))
    assert fed.config.quantization(4).bits == 16
    run = quick_round(fed)
    assert run.result is not None
    payloads = [
        unpack(Envelope.from_bytes(raw).payload)
        for raw in run.server_log
        if Envelope.from_bytes(raw).stage == m.MASKED_INPUT
    ]
    assert all(len(p["y"]) == 2 * (D + 1) for p in payloads)


def test_garbage_and_changed_repeated_messages_drop_the_sender(fed: Federation) -> None:
    ctx = fed.ctx(1, D)
    server, sites = fed.server(ctx), fed.sites(ctx)
    updates = random_updates(fed.names, D)
    env = sites["site-00"].submit(updates["site-00"], 1.0)[0]
    server.handle(env)
    assert server.handle(env) == []  # the same advert twice: a retry, acknowledged
    assert "site-00" not in server.rejected
    changed = dataclasses.replace(env, payload=env.payload[:-1] + bytes([env.payload[-1] ^ 1]))
    server.handle(changed)  # a second advert with other bytes
    assert "site-00" in server.rejected
    server.handle(_env(m.ADVERTISE, "site-01", payload=b"\xc1garbage"))
    assert "site-01" in server.rejected
    server.handle(_env(m.UNMASK, "site-02", payload=pack({"v": 1, "b": {}, "s": {}})))
    assert "site-02" in server.rejected


@pytest.mark.parametrize(
    "env",
    [
        _env(m.ADVERTISE, "eve"),
        _env(m.ADVERTISE, "site-00", round_id=2),
        _env(m.ADVERTISE, "site-00", federation="other"),
    ],
    ids=["unknown-sender", "other-round", "other-federation"],
)
def test_envelopes_from_outside_the_round_raise(fed: Federation, env: Envelope) -> None:
    server = fed.server(fed.ctx(1, D))
    with pytest.raises(ProtocolError):
        server.handle(env)


def test_site_refuses_out_of_order_server_messages(fed: Federation) -> None:
    ctx = fed.ctx(1, D)
    site = fed.sites(ctx)["site-00"]
    env = _env(m.UNMASK_REQUEST, "server", receiver="site-00")
    with pytest.raises(ProtocolError):
        site.handle(env)  # before submit
    site.submit(np.zeros(D, dtype=np.float32), 1.0)
    with pytest.raises(ProtocolError):
        site.handle(env)  # unmask before shares


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_update_is_refused_before_anything_is_sent(
    fed: Federation, bad: float, tmp_path: Path
) -> None:
    ctx = fed.ctx(1, D)
    site = fed.sites(ctx)["site-00"]
    vec = np.zeros(D, dtype=np.float32)
    vec[3] = bad
    with pytest.raises(ProtocolError, match="NaN or infinite"):
        site.submit(vec, 1.0)
    assert not (tmp_path / "site-00.json").exists()  # round id not even claimed


@pytest.mark.parametrize(
    ("vector", "weight"),
    [
        (np.zeros(D - 1, dtype=np.float32), 1.0),
        (np.zeros((2, D), dtype=np.float32), 1.0),
        (np.zeros(D, dtype=np.float32), 101.0),
        (np.zeros(D, dtype=np.float32), 0.0),
    ],
)
def test_wrong_shape_or_weight_is_refused(fed: Federation, vector: Any, weight: float) -> None:
    site = fed.sites(fed.ctx(1, D, max_weight=100.0))["site-00"]
    with pytest.raises(ProtocolError):
        site.submit(vector, weight)


def test_round_id_reuse_is_refused_after_reopening_the_state_file(fed: Federation) -> None:
    ctx = fed.ctx(7, D)
    vec = np.zeros(D, dtype=np.float32)
    fed.site_mode("site-00").site(ctx, "site-00").submit(vec, 1.0)
    reopened = fed.site_mode("site-00")  # a new process reading the same file
    with pytest.raises(AbortError, match="already masked"):
        reopened.site(ctx, "site-00").submit(vec, 1.0)
    reopened.site(fed.ctx(8, D), "site-00").submit(vec, 1.0)  # the next round is fine


def test_modes_refuse_the_other_half(fed: Federation) -> None:
    ctx = fed.ctx(1, D)
    site_mode = fed.site_mode("site-00")
    server_mode = MaskServerMode(roster=fed.roster, config=fed.config)
    assert site_mode.name == server_mode.name == "mask"
    assert site_mode.hides_updates and server_mode.hides_updates
    with pytest.raises(ConfigError):
        site_mode.server(ctx)
    with pytest.raises(ConfigError):
        server_mode.site(ctx, "site-00")
    with pytest.raises(ConfigError):
        site_mode.site(ctx, "site-01")  # holds site-00's key only


def test_site_mode_refuses_a_roster_that_does_not_match_its_key(fed: Federation) -> None:
    with pytest.raises(ConfigError):
        MaskSiteMode(
            site_id="site-00",
            signing_key=fed.keys["site-01"],
            roster=fed.roster,
            state_path=fed.tmp / "x.json",
            config=fed.config,
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clip": 0.0},
        {"clip": float("nan")},
        {"clip": 1.0, "bits": 33},
        {"clip": 1.0, "bits": 8},
        {"clip": 1.0, "min_cohort": 2},
        {"clip": 1.0, "threshold": 1},
        {"clip": 1.0, "dropout_rate": 0.6},
    ],
)
def test_invalid_config_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        MaskConfig(**kwargs)


def test_overflow_prone_ring_is_refused() -> None:
    with pytest.raises(OverflowRefusedError):
        MaskConfig(clip=1.0, bits=16, precision_bits=16)
    cfg = MaskConfig(clip=1.0, bits=20, precision_bits=16)
    with pytest.raises(OverflowRefusedError):
        cfg.quantization(64)
    with pytest.raises(OverflowRefusedError):
        MaskConfig(clip=1.0, precision_bits=30).quantization(8)  # needs more than 32 bits


@pytest.mark.parametrize(
    ("n", "t", "colluders", "dropouts"),
    [(3, 3, 2, 0), (4, 3, 1, 1), (5, 4, 2, 1), (6, 4, 1, 2), (7, 5, 2, 2), (10, 7, 3, 3)],
)
def test_default_threshold_withstands_a_third_of_the_cohort_colluding(
    n: int, t: int, colluders: int, dropouts: int
) -> None:
    """2t > n + floor((n-1)/3), and never below min_cohort (n = 3 forces t = 3).

    ``colluders`` is the split-view bound 2t - n - 1; the plan also keeps two
    honest sites in the sum, so at n = 3 (t = 3) it withstands n - 2 = 1.
    """
    plan = MaskConfig(clip=1.0).plan(federation="f", round_id=1, cohort=site_names(n))
    assert plan.threshold == t
    assert 2 * t > n + (n - 1) // 3 and t >= 3
    assert colluders_tolerated(n, t) == colluders
    assert plan.colluders_tolerated == min(colluders, n - 2) >= (n - 1) // 3
    assert dropouts_tolerated(n, t) == plan.missing_allowed == dropouts


def test_thresholds() -> None:
    names = site_names(10)
    assert (
        MaskConfig(clip=1.0, corrupt=3).plan(federation="f", round_id=1, cohort=names).threshold
        == 7
    )
    explicit = MaskConfig(clip=1.0, corrupt=0)  # says one thing: no colluders assumed
    assert explicit.plan(federation="f", round_id=1, cohort=names).threshold == 6
    assert explicit.plan(federation="f", round_id=1, cohort=names[:3]).threshold == 3  # min_cohort
    with pytest.raises(ConfigError, match="threshold"):  # 2 * 6 <= 10 + 3 (default policy)
        MaskConfig(clip=1.0, threshold=6).plan(federation="f", round_id=1, cohort=names)
    with pytest.raises(ConfigError, match="at least 12 sites"):  # c + 2 = 12 > 10
        MaskConfig(clip=1.0, corrupt=10).plan(federation="f", round_id=1, cohort=names)
    with pytest.raises(ConfigError, match="exceeds"):  # t = 9 > 8 at n = 8 for c = 9 of N = 20
        MaskConfig(clip=1.0, corrupt=6, threshold=9).plan(
            federation="f", round_id=1, cohort=names[:8], federation_size=20
        )
    with pytest.raises(ConfigError):
        MaskConfig(clip=1.0).plan(federation="f", round_id=1, cohort=names[:2])  # below min_cohort
    with pytest.raises(ConfigError):
        MaskConfig(clip=1.0, corrupt=-1)


def test_a_site_refuses_a_server_running_a_lower_threshold(tmp_path: Path) -> None:
    """The server is configured for t = 3 of 5; every site derives t = 4 from its own policy."""
    fed = Federation(tmp_path, 5, MaskConfig(clip=1.0))
    lower = MaskConfig(clip=1.0, corrupt=0)
    assert lower.plan(federation="fed", round_id=1, cohort=fed.names).threshold == 3
    gone = dict.fromkeys(fed.names[3:], m.MASKED_INPUT)  # two sites "drop" before their inputs
    run = run_round(
        fed,
        fed.ctx(1, D),
        random_updates(fed.names, D),
        dict.fromkeys(fed.names, 1.0),
        drop=gone,
        server_config=lower,
    )
    assert set(run.aborted) == set(fed.names[:3]), "a site accepted 3 survivors under its t = 4"
    assert all(m.UNMASK not in sent for sent in run.sent_by.values())
    assert run.result is None


def _shift(coordinate: int, by: Callable[[QuantizationParams], int]) -> Tamper:
    """site-02 adds ``by(quant)`` to one coordinate of its masked input: any ring element passes."""

    def edit(body: dict[str, Any]) -> None:
        quant = MaskConfig(clip=1.0, bits=20).quantization(5)
        y = m.unpack_ring(body["y"], body["n"], body["bits"]).astype(np.int64)
        y[coordinate] = (y[coordinate] + by(quant)) % (1 << body["bits"])
        body["y"] = m.pack_ring(y.astype(np.uint32), body["bits"])

    return edit_payload(m.MASKED_INPUT, edit, sender="site-02")


@pytest.mark.parametrize(
    "tamper",
    [
        _shift(1, lambda q: int(4 * q.scale)),  # 4 x clip: inside the ring's range for 5 sites
        _shift(3, lambda q: -int(2 * q.scale)),
        _shift(0, lambda q: -int(q.scale)),  # a negative weight: the total goes below zero
        _shift(0, lambda q: 5 * q.value_bound),  # a weight of 6 x max_weight
    ],
    ids=["update-4x-clip", "update-minus-2x-clip", "negative-weight", "weight-beyond-max"],
)
def test_an_infeasible_masked_input_gets_the_round_rejected(
    fed: Federation, tamper: Tamper
) -> None:
    """Weights of 1 of 100: five honest sites sum to at most 0.05 x clip per coordinate."""
    run = quick_round(fed, tamper)
    assert not run.aborted and "site-02" not in run.server.rejected  # it looked like any input
    assert run.result is None and run.server.stage == "aborted"
    assert run.server_abort is not None


def test_a_shift_within_the_feasible_bound_is_not_caught(fed: Federation) -> None:
    """The limit of the check (threat_models/mask.md): it bounds the sum, not each input."""
    honest = quick_round(fed)
    assert honest.result is not None
    run = quick_round(fed, _shift(1, lambda q: int(0.02 * q.scale)), round_id=2)
    assert run.result is not None  # 0.02 x clip more than site-02's weighted update could hold
    moved = run.result.weighted_sum[0] - honest.result.weighted_sum[0]
    assert 1.5 <= moved <= 2.5  # x max_weight = 100: site-02 moved the sum by 2 instead of <= 1
