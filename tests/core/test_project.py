"""Promises the project makes about itself: README commands, CI, public API."""

import re
from pathlib import Path

import numpy as np

import securefl

ROOT = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [b.strip() for b in blocks[:2]]


def test_readme_run_command_installs_with_the_constraints_and_runs_simulate():
    run, _ = _readme_commands()
    assert "-c constraints.txt" in run and run.endswith("securefl simulate")


def test_ci_runs_the_readme_test_command_verbatim():
    _, test_command = _readme_commands()
    assert "-c constraints.txt" in test_command and "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_constraints_pin_the_cpu_torch_but_the_package_takes_a_range():
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text(encoding="utf-8")
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (spec,) = re.findall(r'"torch([^"]*)"', pyproject)
    assert ">=" in spec and "==" not in spec


def test_public_api_exports_exactly_what_all_lists():
    for name in securefl.__all__:
        assert getattr(securefl, name) is not None, name
    import inspect

    public = {
        n
        for n in dir(securefl)
        if not n.startswith("_") and not inspect.ismodule(getattr(securefl, n))
    }
    lazy = {"ParamSpec", "Round", "Site"}
    assert public - {"TYPE_CHECKING"} == set(securefl.__all__) - lazy - {"__version__"}


def test_no_hazmat_name_in_the_safe_api():
    import securefl.hazmat as hazmat

    assert not set(securefl.__all__) & set(hazmat.__all__)


def test_every_error_is_under_one_base_with_an_exit_code():
    import securefl.errors as errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.SecureFLError)
        assert isinstance(cls.exit_code, int) and cls.exit_code > 0


def test_threat_model_claims_name_tests_that_exist():
    """A claim without a test is a bug: every `tests/...py::name` cited must exist."""
    cited = 0
    for page in (ROOT / "threat_models").glob("*.md"):
        text = page.read_text(encoding="utf-8")
        for path, name in re.findall(r"(tests/[\w/]+\.py)::(\w+)", text):
            source = (ROOT / path).read_text(encoding="utf-8")
            assert re.search(rf"def {name}\b", source), f"{page.name}: {path}::{name}"
            cited += 1
    assert cited > 20


def test_preprocessing_is_record_wise():
    """Transforming records one by one or together gives the same result: no pooled statistic."""
    from securefl.data.preprocess import public_range_scale, signed_log

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 100, size=(50, 4))
    lows, highs = [0, 0, 0, 0], [100, 100, 100, 100]
    together = public_range_scale(x, lows, highs)
    alone = np.vstack([public_range_scale(row[None, :], lows, highs) for row in x])
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(signed_log(x), np.vstack([signed_log(r[None, :]) for r in x]))


def test_bundled_sites_are_disjoint_and_differently_distributed():
    from securefl.data import breast_cancer_federation

    fed = breast_cancer_federation(seed=0)
    rows = [tuple(r) for s in fed.sites for r in np.vstack([s.x_train, s.x_val])]
    rows += [tuple(r) for r in fed.x_test]
    assert len(rows) == 569 == len(set(rows))
    malignant = [s.y_train.mean() for s in fed.sites]
    assert max(malignant) - min(malignant) > 0.3


def test_example_federation_file_loads():
    from securefl.config import load_federation

    fed = load_federation(ROOT / "examples" / "fed.toml")
    assert fed.secure == "mask" and len(fed.sites) == 3
