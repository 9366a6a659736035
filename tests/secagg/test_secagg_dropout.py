"""Dropouts at every stage are recovered; too few survivors abort before any share is released."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from secagg_driver import Federation, plaintext, random_updates, run_round

from securefl.secagg import STAGES, UNMASK, MaskConfig
from securefl.wire import unpack

D = 64
CLIP = 1.0
MAX_W = 100.0


def _bound(n: int, cfg: MaskConfig) -> float:
    """Largest error of Σ w·Δ: each site's quantization error is below max_w·clip/2^p."""
    return n * MAX_W * cfg.clip / 2**cfg.precision_bits


def _check(fed: Federation, run, updates, weights, expected_survivors) -> None:  # type: ignore[no-untyped-def]
    assert run.server_abort is None and not run.aborted
    assert run.result is not None
    assert run.result.survivors == tuple(sorted(expected_survivors))
    want, want_w = plaintext(updates, weights, run.result.survivors, fed.config.clip)
    bound = _bound(len(run.result.survivors), fed.config)
    assert np.max(np.abs(run.result.weighted_sum - want)) <= bound
    assert abs(run.result.total_weight - want_w) <= bound


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    """Six sites: the default policy gives t = 4, so two dropouts are tolerated."""
    fed = Federation(tmp_path, 6, MaskConfig(clip=CLIP))
    plan = fed.config.plan(federation="fed", round_id=1, cohort=fed.names)
    assert plan.threshold == 4 and plan.missing_allowed == 2
    return fed


def _inputs(fed: Federation):  # type: ignore[no-untyped-def]
    updates = random_updates(fed.names, D, scale=0.7)  # some values beyond the clip bound
    weights = {s: 10.0 + 7 * i for i, s in enumerate(fed.names)}
    return updates, weights


def test_no_dropout_gives_the_weighted_sum(fed: Federation) -> None:
    updates, weights = _inputs(fed)
    run = run_round(fed, fed.ctx(1, D, MAX_W), updates, weights)
    _check(fed, run, updates, weights, fed.names)
    assert np.allclose(
        run.result.mean(),
        plaintext(updates, weights, fed.names, CLIP)[0]  # type: ignore[union-attr]
        / sum(weights.values()),
        atol=1e-3,
    )


@pytest.mark.parametrize("stage", STAGES)
def test_one_dropout_at_each_stage_is_recovered(fed: Federation, stage: str) -> None:
    updates, weights = _inputs(fed)
    gone = fed.names[2]
    run = run_round(fed, fed.ctx(1, D, MAX_W), updates, weights, drop={gone: stage})
    # A site that vanished after its masked input arrived is still in the sum.
    included = STAGES.index(stage) > STAGES.index("mask/masked-input")
    survivors = fed.names if included else tuple(s for s in fed.names if s != gone)
    _check(fed, run, updates, weights, survivors)


@pytest.mark.parametrize("stage", ["mask/masked-input", UNMASK])
def test_two_dropouts_are_recovered(fed: Federation, stage: str) -> None:
    updates, weights = _inputs(fed)
    gone = {fed.names[0]: stage, fed.names[4]: stage}
    run = run_round(fed, fed.ctx(1, D, MAX_W), updates, weights, drop=gone)
    survivors = fed.names if stage == UNMASK else tuple(s for s in fed.names if s not in gone)
    _check(fed, run, updates, weights, survivors)


def test_dropouts_at_different_stages_are_recovered(fed: Federation) -> None:
    updates, weights = _inputs(fed)
    drop = {fed.names[0]: "mask/share", fed.names[3]: "mask/masked-input"}
    run = run_round(fed, fed.ctx(1, D, MAX_W), updates, weights, drop=drop)
    _check(fed, run, updates, weights, (fed.names[1], fed.names[2], *fed.names[4:]))


@pytest.mark.parametrize("stage", STAGES[:4])
def test_fewer_than_threshold_survivors_abort_with_no_shares_released(
    fed: Federation, stage: str
) -> None:
    updates, weights = _inputs(fed)
    drop = dict.fromkeys(fed.names[:3], stage)  # 3 of 6 left; t = 4
    run = run_round(fed, fed.ctx(1, D, MAX_W), updates, weights, drop=drop)
    assert run.result is None and run.server_abort is not None
    assert run.server.stage == "aborted"
    assert all(UNMASK not in stages for stages in run.sent_by.values())


def test_unmask_shares_never_reveal_both_secrets_of_one_site(fed: Federation) -> None:
    updates, weights = _inputs(fed)
    drop = {fed.names[1]: "mask/masked-input"}
    run = run_round(fed, fed.ctx(1, D, MAX_W), updates, weights, drop=drop)
    assert run.result is not None
    from securefl.wire import Envelope

    revealed_b: set[str] = set()
    revealed_s: set[str] = set()
    for raw in run.server_log:
        env = Envelope.from_bytes(raw)
        if env.stage == UNMASK:
            body = unpack(env.payload)
            revealed_b |= set(body["b"])
            revealed_s |= set(body["s"])
    assert revealed_s == {fed.names[1]}
    assert not revealed_b & revealed_s


def test_departure_is_treated_as_a_dropout(fed: Federation) -> None:
    ctx = fed.ctx(1, D, MAX_W)
    updates, weights = _inputs(fed)
    server, sites = fed.server(ctx), fed.sites(ctx)
    out = []
    for s in fed.names[:-1]:
        for env in sites[s].submit(updates[s], weights[s]):
            out += server.handle(env)
    assert out == [] and server.stage == "mask/advertise"
    out = server.on_departure(fed.names[-1])  # everyone else answered: move on at once
    assert server.stage == "mask/share"
    assert {e.receiver for e in out} == set(fed.names[:-1])


def test_regular_graph_round_with_dropouts(tmp_path: Path) -> None:
    cfg = MaskConfig(clip=CLIP, complete_graph_max=3, dropout_rate=0.05, corrupt_rate=0.0)
    fed = Federation(tmp_path, 20, cfg)
    plan = cfg.plan(federation="fed", round_id=1, cohort=fed.names)
    assert not plan.complete and plan.k < 19 and plan.missing_allowed == 1
    assert all(len(plan.neighbours(s)) == plan.k for s in fed.names)
    assert all(b in plan.neighbours(a) for a in fed.names for b in plan.neighbours(a))
    updates = random_updates(fed.names, D)
    weights = dict.fromkeys(fed.names, 50.0)
    run = run_round(
        fed, fed.ctx(1, D, MAX_W), updates, weights, drop={fed.names[3]: "mask/masked-input"}
    )
    _check(fed, run, updates, weights, [s for s in fed.names if s != fed.names[3]])


def test_regular_graph_round_with_more_dropouts_than_it_was_sized_for_aborts(
    tmp_path: Path,
) -> None:
    """dropout_rate = 0.05 of 20 sites allows one missing: the honest server stops at two."""
    cfg = MaskConfig(clip=CLIP, complete_graph_max=3, dropout_rate=0.05, corrupt_rate=0.0)
    fed = Federation(tmp_path, 20, cfg)
    updates = random_updates(fed.names, D)
    weights = dict.fromkeys(fed.names, 50.0)
    drop = dict.fromkeys(fed.names[3:5], "mask/masked-input")
    run = run_round(fed, fed.ctx(1, D, MAX_W), updates, weights, drop=drop)
    assert run.result is None and run.server_abort is not None
    assert not run.aborted  # the server stopped before showing anyone the short list
    assert all(UNMASK not in stages for stages in run.sent_by.values())


def test_regular_graph_round_with_too_few_consistency_signatures_aborts_at_the_server(
    tmp_path: Path,
) -> None:
    """n = 20, m = 1: one site gone before its input and one before signing leave 18 < n - m.

    Each site would refuse the list for lack of n - m cohort-wide signatures
    (``plan.quorum``); the honest server stops first and requests no share.
    """
    cfg = MaskConfig(clip=CLIP, complete_graph_max=3, dropout_rate=0.05, corrupt_rate=0.0)
    fed = Federation(tmp_path, 20, cfg)
    plan = cfg.plan(federation="fed", round_id=1, cohort=fed.names)
    assert not plan.complete and plan.quorum == 19 > plan.threshold
    updates = random_updates(fed.names, D)
    drop = {fed.names[3]: "mask/masked-input", fed.names[9]: "mask/consistency"}
    run = run_round(fed, fed.ctx(1, D, MAX_W), updates, dict.fromkeys(fed.names, 50.0), drop=drop)
    assert run.result is None and run.server_abort is not None
    assert not run.aborted and all(UNMASK not in s for s in run.sent_by.values())
