"""``simulate`` with the neighbourhood mask round (``mask.neighbourhood = true``), in-process.

The neighbourhood round must aggregate what the cohort-wide round and
``plain`` aggregate, with its consistency count proven by one BLS aggregate
per site: the simulation has to hand every party the sites' BLS keys, as a
provisioned roster lists them. ``complete_graph_max = 3`` puts eight sites
on a k-regular graph (k = 4), where the neighbourhood round runs (on the
complete graph it is the cohort-wide round). Each site submits a vector
fixed by (site, round) instead of its DP-SGD update
(:mod:`neighbourhood_inputs`), so the models of different modes can be
compared; the training itself still runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from neighbourhood_inputs import FixedInputs
from safetensors.numpy import load_file

from securefl.config import DPConfig, FederationConfig, RoundConfig, StrategyConfig, TrainConfig
from securefl.data import breast_cancer_federation
from securefl.data.federations import FederatedData
from securefl.data.partition import partitioned_federation
from securefl.hazmat import bls
from securefl.reports import audit
from securefl.secagg import MaskConfig
from securefl.simulation import federation as federation_module
from securefl.simulation import modes
from securefl.simulation.orchestrator import _seeded_model, run_simulation

SITES = 8
SEED = 7


def _mask(neighbourhood: bool) -> MaskConfig:
    return MaskConfig(
        clip=1.0,
        complete_graph_max=3,
        dropout_rate=0.0,
        corrupt_rate=0.0,
        neighbourhood=neighbourhood,
    )


def _config(secure: str, mask: MaskConfig | None = None, rounds: int = 1) -> FederationConfig:
    return FederationConfig(
        secure=secure,
        dp=DPConfig(epsilon=1.0, batch_size=16),
        train=TrainConfig(learning_rate=0.5),
        rounds=RoundConfig(max_rounds=rounds, stage_timeout_seconds=60),
        strategy=StrategyConfig(),
        **({"mask": mask} if mask is not None else {}),
    )


@pytest.fixture
def data() -> FederatedData:
    return breast_cancer_federation(sites=SITES, seed=2)


@pytest.fixture
def fixed_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every site of an in-process run submits its fixed input (see the module doc)."""
    real = federation_module.make_setup

    def make_setup(*args: Any, **kwargs: Any) -> modes.SecureSetup:
        setup = real(*args, **kwargs)
        return modes.SecureSetup(
            lambda name: FixedInputs(setup.site_mode(name)),
            setup.server_mode,
            setup.global_model,
            setup.decoder,
        )

    monkeypatch.setattr(federation_module, "make_setup", make_setup)


@pytest.fixture
def bls_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the BLS aggregate checks (each site's, and the server's), by signer count."""
    seen: list[int] = []
    real = bls.verify_aggregate

    def counting(publics: Any, message: bytes, signature: bytes) -> None:
        keys = list(publics)
        seen.append(len(keys))
        real(keys, message, signature)

    monkeypatch.setattr(bls, "verify_aggregate", counting)
    yield seen


def _model(out: Path) -> dict[str, np.ndarray]:
    return load_file(str(out / "global_model.safetensors"))


def _run(tmp_path: Path, name: str, data: FederatedData, config: FederationConfig) -> Path:
    out = tmp_path / name
    result = run_simulation(data, config, out=out, seed=SEED)
    assert [h["status"] for h in result.history] == ["aggregated"] * config.rounds.max_rounds
    assert all(len(h["survivors"]) == SITES for h in result.history)
    report = audit([out])
    assert report.passed, [f.to_dict() for f in report.findings]
    return out


def test_eight_sites_are_on_a_k_regular_graph_where_the_neighbourhood_round_runs() -> None:
    cohort = tuple(sorted(s.name for s in breast_cancer_federation(sites=SITES, seed=2).sites))
    plan = _mask(True).plan(federation="f", round_id=1, cohort=cohort, federation_size=SITES)
    assert not plan.complete and plan.local and plan.k == 4
    # the same count as the cohort-wide round: n - m signers, colluders tolerated as there
    wide = _mask(False).plan(federation="f", round_id=1, cohort=cohort, federation_size=SITES)
    assert (plan.quorum, plan.colluders_tolerated) == (wide.quorum, wide.colluders_tolerated)


@pytest.mark.slow
def test_the_neighbourhood_round_aggregates_what_plain_and_the_cohort_wide_round_do(
    tmp_path: Path,
    data: FederatedData,
    fixed_inputs: None,
    bls_checks: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    initial = _seeded_model(data.num_features, len(data.classes), SEED)
    start = {k: v.detach().numpy() for k, v in initial.state_dict().items()}
    plain = _model(_run(tmp_path, "plain", data, _config("plain")))
    wide = _model(_run(tmp_path, "wide", data, _config("mask", _mask(False))))
    assert bls_checks == []  # the cohort-wide round signs with Ed25519
    proofs: list[bytes] = []
    real_check = bls.check_possession

    def counting(public: bytes, proof: bytes) -> None:
        proofs.append(public)
        real_check(public, proof)

    monkeypatch.setattr(bls, "check_possession", counting)
    near = _model(_run(tmp_path, "near", data, _config("mask", _mask(True))))
    # the process checked each roster proof once, for the server and all eight sites
    assert len(proofs) == len(set(proofs)) == SITES
    # every site checked one aggregate of at least n - m signers, and so did the server
    cohort = tuple(sorted(s.name for s in data.sites))
    quorum = _mask(True).plan(federation="f", round_id=1, cohort=cohort).quorum
    assert len(bls_checks) >= SITES + 1 and min(bls_checks) >= quorum
    assert set(near) == set(plain) == set(wide) == set(start)
    moved = max(float(np.abs(plain[k] - start[k]).max()) for k in plain)
    assert moved > 0.01  # the round changed the model: the comparison below means something
    for k in plain:
        # the masked sum is exact up to quantization (16 bits over the clip)
        np.testing.assert_allclose(near[k], plain[k], atol=1e-3)
        np.testing.assert_allclose(near[k], wide[k], atol=1e-3)


@pytest.mark.slow
def test_a_site_lost_before_it_signs_leaves_exactly_the_quorum_and_the_sum_is_whole(
    tmp_path: Path, fixed_inputs: None, bls_checks: list[int]
) -> None:
    # twenty sites on a graph of degree 16 that tolerates one missing site (m = 1): one
    # vanishes after its masked input, before its consistency signature, so every site
    # checks an aggregate of exactly n - m = 19 signers and the sum still holds its input
    data = partitioned_federation(sites=20, alpha=0.5, seed=0, batch_size=16)
    cohort = tuple(sorted(s.name for s in data.sites))
    mask = MaskConfig(
        clip=1.0, complete_graph_max=3, dropout_rate=0.05, corrupt_rate=0.0, neighbourhood=True
    )
    plan = mask.plan(federation="f", round_id=1, cohort=cohort, federation_size=20)
    assert not plan.complete and (plan.k, plan.missing_allowed, plan.quorum) == (16, 1, 19)
    config = _config("mask", mask)
    lost = cohort[3]
    near = tmp_path / "near"
    result = run_simulation(data, config, out=near, seed=SEED, dropouts={lost: "consistency"})
    assert [(h["status"], len(h["survivors"])) for h in result.history] == [("aggregated", 20)]
    assert "vanished" in next(s.error for s in result.sites if s.name == lost)
    assert audit([near]).passed
    assert len(bls_checks) >= 19 and min(bls_checks) == 19
    plain = tmp_path / "plain"
    run_simulation(data, _config("plain"), out=plain, seed=SEED)
    whole, got = _model(plain), _model(near)
    for k in whole:
        np.testing.assert_allclose(got[k], whole[k], atol=1e-3)
