"""``simulate --backend``: the Ray options reach the Ray backend, and only it.

No Ray is started here: the run function is captured, so these tests run
where Ray is not installed too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from securefl.cli import cli
from securefl.errors import ConfigError
from securefl.simulation import orchestrator, ray_backend
from securefl.simulation.ray_backend import RayOptions, _split


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def _capture(monkeypatch: pytest.MonkeyPatch) -> list[RayOptions]:
    seen: list[RayOptions] = []

    def fake(data: Any, config: Any, *, options: RayOptions, **_: Any) -> Any:
        seen.append(options)
        return orchestrator.SimulationResult(
            secure=config.secure, rounds=0, finish_reason="captured", global_accuracy=0.0, sites=[]
        )

    monkeypatch.setattr(ray_backend, "run_ray_simulation", fake)
    return seen


def test_the_ray_options_reach_the_ray_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _capture(monkeypatch)
    _invoke(
        "simulate", "--backend", "ray", "--ray-address", "auto", "--workers", "3",
        "--worker-cpus", "0.5", "--worker-gpus", "0.25", "--rounds", "1",
    )  # fmt: skip
    assert seen == [RayOptions(address="auto", workers=3, worker_cpus=0.5, worker_gpus=0.25)]


@pytest.mark.parametrize(
    "args",
    [
        ("--workers", "2"),
        ("--ray-address", "auto"),
        ("--worker-cpus", "2"),
        ("--backend", "ray", "--transport", "https"),
    ],
)
def test_a_ray_option_the_run_cannot_honour_is_refused_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: tuple[str, ...]
) -> None:
    seen = _capture(monkeypatch)
    ran: list[object] = []
    monkeypatch.setattr(orchestrator, "run_simulation", lambda *a, **k: ran.append(a))
    out = tmp_path / "run"
    result = _invoke("simulate", "--rounds", "1", "--out", str(out), *args)
    assert result.exit_code != 0
    assert seen == [] and ran == []
    assert not (out / "summary.json").exists()


def test_ray_settings_out_of_range_are_refused() -> None:
    for bad in ({"workers": 0}, {"worker_cpus": 0.0}, {"worker_gpus": -1.0}):
        with pytest.raises(ConfigError):
            RayOptions(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("n", "parts"), [(3, 2), (10, 3), (500, 2), (7, 7)])
def test_sites_are_split_into_pools_that_differ_by_at_most_one(n: int, parts: int) -> None:
    names = [f"s{i:03d}" for i in range(n)]
    groups = _split(names, parts)
    assert [n for g in groups for n in g] == names  # every site once, in order
    assert len(groups) == parts and max(map(len, groups)) - min(map(len, groups)) <= 1


def test_ray_is_an_optional_extra_in_a_range_that_ci_installs() -> None:
    import re
    import tomllib

    root = Path(__file__).resolve().parents[2]
    extras = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not any(dep.startswith("ray") for dep in extras["dependencies"])  # the core needs none
    (spec,) = extras["optional-dependencies"]["ray"]
    assert re.fullmatch(r"ray>=[\d.]+,<\d+", spec)
    assert "securefl[ray]" in extras["optional-dependencies"]["dev"]  # CI installs .[dev]
    pins = (root / "constraints.txt").read_text(encoding="utf-8").split()
    assert any(re.fullmatch(r"ray==[\d.]+", p) for p in pins)
