"""``simulate --backend ray``: the same federation as in-process, its sites in Ray actors.

One local Ray (two CPUs) serves the whole module and is shut down at its end.
Each test runs a small federation on both backends, or plays the adversary
at the actor boundary.
"""

import base64
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip(
    "ray", reason='the Ray backend needs Ray: pip install -e ".[dev]" (the ray extra) installs it'
)

from securefl.config import (  # noqa: E402
    DPConfig,
    FederationConfig,
    RoundConfig,
    StrategyConfig,
    TrainConfig,
)
from securefl.data import breast_cancer_federation  # noqa: E402
from securefl.reports import audit  # noqa: E402
from securefl.secagg import MaskConfig  # noqa: E402
from securefl.simulation import federation as federation_module  # noqa: E402
from securefl.simulation import modes, ray_backend  # noqa: E402
from securefl.simulation.orchestrator import run_simulation  # noqa: E402
from securefl.simulation.ray_backend import RayOptions, run_ray_simulation  # noqa: E402

pytestmark = pytest.mark.slow

#: the neighbourhood round on a k-regular graph from six sites on (k = 4)
NEIGHBOURHOOD = MaskConfig(
    clip=1.0, complete_graph_max=3, dropout_rate=0.0, corrupt_rate=0.0, neighbourhood=True
)

TWO_POOLS = RayOptions(workers=2)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for the module, its files outside the repository, shut down at the end."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    temp = tempfile.mkdtemp(prefix="ray-")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _temp_dir=temp,
    )
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def _config(secure, rounds=2, **kw):
    return FederationConfig(
        secure=secure,
        dp=DPConfig(epsilon=1.0, batch_size=16),
        train=TrainConfig(learning_rate=0.5),
        rounds=RoundConfig(max_rounds=rounds, stage_timeout_seconds=60),
        strategy=StrategyConfig(),
        **kw,
    )


def _shape(value):
    """The keys of a JSON document, recursively (the values may differ: DP noise is random)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__ if value is not None else None


def _both(tmp_path, data, config, dropouts=None):
    """The same federation on both backends; both run folders must pass the audit."""
    results = {}
    for backend in ("inprocess", "ray"):
        out = tmp_path / backend
        if backend == "ray":
            result = run_ray_simulation(
                data, config, options=TWO_POOLS, out=out, dropouts=dict(dropouts or {})
            )
        else:
            result = run_simulation(data, config, out=out, dropouts=dict(dropouts or {}))
        report = audit([out])
        assert report.passed, (backend, [f.to_dict() for f in report.findings])
        results[backend] = (result, json.loads((out / "summary.json").read_text()))
        assert sorted(p.name for p in (out / "records").iterdir()) == sorted(
            f"{s.name}.jsonl" for s in data.sites
        )
    (mem, mem_summary), (far, far_summary) = results["inprocess"], results["ray"]
    assert _shape(far_summary) == _shape(mem_summary)
    assert [h["status"] for h in far_summary["history"]] == [
        h["status"] for h in mem_summary["history"]
    ]
    assert [h["survivors"] for h in far_summary["history"]] == [
        h["survivors"] for h in mem_summary["history"]
    ]
    for a, b in zip(far.sites, mem.sites, strict=True):
        assert (a.name, a.rounds_trained, a.num_examples) == (
            b.name,
            b.rounds_trained,
            b.num_examples,
        )
        assert a.epsilon == pytest.approx(b.epsilon)  # same σ, same steps: the same spend
        assert a.noise_multiplier == pytest.approx(b.noise_multiplier)
        assert bool(a.error) == bool(b.error)
    return far, mem


def test_plain_on_ray_writes_what_inprocess_writes(tmp_path):
    far, _ = _both(tmp_path, breast_cancer_federation(sites=3, seed=1), _config("plain"))
    assert far.rounds_completed == 2 and np.isfinite(far.global_accuracy)


def test_the_command_runs_on_ray_and_its_run_folder_audits(tmp_path):
    from click.testing import CliRunner

    from securefl.cli import cli

    out = tmp_path / "run"
    args = ["simulate", "--backend", "ray", "--workers", "2", "--secure", "plain", "--sites", "3"]
    result = CliRunner().invoke(cli, [*args, "--rounds", "1", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds_completed"] == 1 and len(summary["sites"]) == 3
    assert audit([out]).passed
    assert ray.is_initialized()  # the module's Ray was used, and left to its owner


def test_he_on_ray_delivers_the_keys_sealed_and_trains(tmp_path):
    far, _ = _both(tmp_path, breast_cancer_federation(sites=3, seed=1), _config("he"))
    assert [h["status"] for h in far.history] == ["aggregated", "aggregated"]
    assert far.global_accuracy > 0.5  # the sites decrypted the model; the server never held one


def test_mask_with_the_k_regular_graph_on_ray_writes_what_inprocess_writes(tmp_path):
    # eight sites on a graph of degree 4 (not the complete one), threshold 3
    mask = MaskConfig(clip=1.0, complete_graph_max=3, dropout_rate=0.0, corrupt_rate=0.0)
    data = breast_cancer_federation(sites=8, seed=2)
    cohort = tuple(sorted(s.name for s in data.sites))
    plan = mask.plan(federation="check", round_id=1, cohort=cohort, federation_size=8)
    assert not plan.complete and plan.k == 4
    far, _ = _both(tmp_path, data, _config("mask", rounds=1, mask=mask))
    assert [h["status"] for h in far.history] == ["aggregated"]
    assert len(far.history[0]["survivors"]) == 8


def _fixed_inputs_everywhere(monkeypatch):
    """Every site, in-process and in each pool, submits a vector fixed by (site, round).

    DP noise differs between runs; with fixed inputs two runs must reach the
    same model (``neighbourhood_inputs``), up to the masking's quantization.
    Returns the pools started; each counts its BLS proof-of-possession checks.
    """
    from neighbourhood_inputs import FixedInputs

    real_setup = federation_module.make_setup

    def make_setup(*args, **kwargs):
        setup = real_setup(*args, **kwargs)
        return modes.SecureSetup(
            lambda name: FixedInputs(setup.site_mode(name)),
            setup.server_mode,
            setup.global_model,
            setup.decoder,
        )

    here = str(Path(__file__).parent)

    def patch(pool):  # runs inside the actor, before its sites are built
        import sys

        sys.path.insert(0, here)
        from neighbourhood_inputs import FixedInputs

        from securefl.modes import SiteHalf
        from securefl.simulation import ray_pool

        real_setup = ray_pool.site_setup

        def site_setup(*args, **kwargs):
            half, keys = real_setup(*args, **kwargs)
            return SiteHalf(FixedInputs(half.mode), half.decoder), keys

        ray_pool.site_setup = site_setup
        from securefl.hazmat import bls

        real_check = bls.check_possession

        def counting(public, proof):  # the pool's proof checks, cached or not
            pool.proof_checks += 1
            real_check(public, proof)

        pool.proof_checks = 0
        bls.check_possession = counting

    real_pools = ray_backend.start_pools
    started = []

    def start_pools(*args, **kwargs):
        pools = real_pools(*args, **kwargs)
        ray.get([p.__ray_call__.remote(patch) for p in pools])
        started.extend(pools)  # kept alive: the test reads them after the run
        return pools

    monkeypatch.setattr(federation_module, "make_setup", make_setup)
    monkeypatch.setattr(ray_backend, "start_pools", start_pools)
    return started


def test_the_neighbourhood_round_on_ray_aggregates_what_inprocess_does(tmp_path, monkeypatch):
    # eight sites on a graph of degree 4: each site's consistency check is one BLS
    # aggregate over the pairs its pool derived and the driver put on the roster
    data = breast_cancer_federation(sites=8, seed=2)
    cohort = tuple(sorted(s.name for s in data.sites))
    plan = NEIGHBOURHOOD.plan(federation="check", round_id=1, cohort=cohort, federation_size=8)
    assert not plan.complete and plan.local and plan.k == 4
    pools = _fixed_inputs_everywhere(monkeypatch)
    far, _ = _both(tmp_path, data, _config("mask", rounds=2, mask=NEIGHBOURHOOD))
    # each pool checked the roster's 8 proofs once for all its sites and rounds, not 8 per site
    checks = ray.get([p.__ray_call__.remote(lambda pool: pool.proof_checks) for p in pools])
    assert checks == [8, 8]
    assert [h["status"] for h in far.history] == ["aggregated", "aggregated"]
    assert all(len(h["survivors"]) == 8 for h in far.history)
    from safetensors.numpy import load_file

    near = load_file(str(tmp_path / "ray" / "global_model.safetensors"))
    mem = load_file(str(tmp_path / "inprocess" / "global_model.safetensors"))
    assert set(near) == set(mem)
    for k in mem:  # the same inputs, the same sum, up to quantization (16 bits over the clip)
        np.testing.assert_allclose(near[k], mem[k], atol=1e-3)


def test_mask_dropout_rehearsal_on_ray_recovers_like_inprocess(tmp_path):
    # a site vanishes after the keys are shared: the others' shares unmask the sum without it
    far, _ = _both(
        tmp_path,
        breast_cancer_federation(sites=5, seed=2),
        _config("mask"),
        dropouts={"hospital-b": "masked-input"},
    )
    assert [h["status"] for h in far.history] == ["aggregated", "aggregated"]
    assert all("hospital-b" not in h["survivors"] for h in far.history)
    assert "vanished" in next(s.error for s in far.sites if s.name == "hospital-b")


# -- the adversary at the actor boundary ------------------------------------------------


def _leaves(value, out):
    """Every byte string inside ``value`` (what Ray serialises when it crosses)."""
    if isinstance(value, ray.ObjectRef):
        _leaves(ray.get(value), out)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        out.append(bytes(value))
    elif isinstance(value, str):
        out.append(value.encode())
    elif isinstance(value, np.ndarray):
        out.append(value.tobytes())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _leaves(getattr(value, f.name), out)
    elif isinstance(value, dict):
        for k, v in value.items():
            _leaves(k, out)
            _leaves(v, out)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            _leaves(v, out)
    elif value is None or isinstance(value, (int, float, bool)):
        return
    else:  # anything else crosses pickled: keep what pickle would carry
        import pickle

        out.append(pickle.dumps(value))


class _Recording:
    """An actor handle that keeps everything sent to the actor and everything it returned."""

    def __init__(self, handle, crossed):
        self._handle, self._crossed = handle, crossed

    def __getattr__(self, name):
        method = getattr(self._handle, name)
        crossed = self._crossed

        class _Method:
            def remote(self, *args, **kwargs):
                _leaves((args, kwargs), crossed)
                return method.remote(*args, **kwargs)

        return _Method()


def _secrets_inside(handle):
    """The private keys a pool holds, read inside the actor (the test's view, not the server's)."""

    def peek(pool):
        from securefl.hazmat.bls import BlsKey
        from securefl.hazmat.sign import SigningKey
        from securefl.he._context import _proto_fields, _secret_bytes

        out = {}
        for name in pool._names:
            signing = SigningKey(pool._identity[name])
            out[f"{name}/identity"] = signing.export_private(
                i_understand_this_exports_a_secret=True
            )
            out[f"{name}/exchange"] = pool._exchange[name].export_private(
                i_understand_this_exports_a_secret=True
            )
            out[f"{name}/bls"] = bytes(BlsKey.from_identity(signing)._secret)
            mode = pool._sites[name].mode
            context = getattr(mode, "context", None)
            if context is not None:
                secret = _proto_fields(_secret_bytes(context.tenseal))[3]
                out[f"{name}/he-secret"] = secret[len(secret) // 2 : len(secret) // 2 + 64]
        return out

    return ray.get(handle.__ray_call__.remote(peek))


@pytest.mark.parametrize("secure", ["mask", "he", "neighbourhood"])
def test_no_private_key_crosses_the_actor_boundary(tmp_path, monkeypatch, secure):
    crossed: list[bytes] = []
    handles = []
    real_start_pools = ray_backend.start_pools
    real_get = ray.get

    def recording_pools(*args, **kwargs):
        pools = real_start_pools(*args, **kwargs)
        handles.extend(pools)
        return [_Recording(p, crossed) for p in pools]

    def recording_get(refs, *args, **kwargs):
        values = real_get(refs, *args, **kwargs)
        _leaves(values, crossed)  # every value an actor returned to the driver
        return values

    monkeypatch.setattr(ray_backend, "start_pools", recording_pools)
    monkeypatch.setattr(ray, "get", recording_get)
    if secure == "neighbourhood":  # k-regular from six sites: the BLS round runs
        data = breast_cancer_federation(sites=6, seed=1)
        config = _config("mask", rounds=1, mask=NEIGHBOURHOOD)
    else:
        data = breast_cancer_federation(sites=3, seed=1)
        config = _config(secure, rounds=1)
    result = run_ray_simulation(data, config, options=TWO_POOLS, out=tmp_path)
    monkeypatch.undo()
    assert result.rounds_completed == 1
    secrets = {}
    for handle in handles:
        secrets.update(_secrets_inside(handle))
    assert len(secrets) >= 9 and all(len(s) >= 32 for s in secrets.values())
    assert (secure != "he") or any(k.endswith("he-secret") for k in secrets)
    assert crossed  # the recorder saw the run's traffic
    blob = b"\x00".join(crossed)
    if secure == "neighbourhood":  # the BLS public keys did cross, to the driver's roster
        import blspy

        publics = [
            bytes(blspy.PrivateKey.from_bytes(s).get_g1())
            for k, s in secrets.items()
            if k.endswith("/bls")
        ]
        assert len(publics) == 6 and all(p in blob for p in publics)
    encodings = (bytes, lambda b: b.hex().encode(), base64.b64encode)  # raw, hex or base64
    leaked = [
        name for name, secret in secrets.items() if any(enc(secret) in blob for enc in encodings)
    ]
    assert leaked == [], f"private keys crossed the actor boundary: {leaked}"


def test_ctrl_c_stops_every_site_and_keeps_what_completed(tmp_path):
    def interrupt_after_round_one(driver):
        if driver.completed_rounds >= 1:
            raise KeyboardInterrupt

    data = breast_cancer_federation(sites=3, seed=1)
    with pytest.raises(KeyboardInterrupt):
        run_ray_simulation(
            data,
            _config("mask", rounds=4),
            options=TWO_POOLS,
            out=tmp_path,
            on_progress=interrupt_after_round_one,
        )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["interrupted"] == "interrupted (Ctrl-C)"
    assert 1 <= summary["rounds_completed"] < 4
    # every site was told and its ledger and records settled: the open run audits clean
    report = audit([tmp_path], still_running=True)
    assert report.passed, [f.to_dict() for f in report.findings]
