"""The example a user copies from must keep working."""

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wrap_existing_trainer_example_runs_to_the_end(capsys):
    runpy.run_path(str(ROOT / "examples" / "wrap_existing_trainer.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "round 5: aggregated" in out
    for site in ("site-a", "site-b", "site-c"):
        assert f"{site}: spent ε" in out


@pytest.mark.slow
def test_digits_cnn_example_learns_the_digits_with_groupnorm(capsys):
    # the imaging example: a CNN on scikit-learn's 8×8 digits (no download), under DP-SGD
    runpy.run_path(str(ROOT / "examples" / "digits_cnn.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "round 5: aggregated" in out
    accuracies = [float(m) for m in re.findall(r"federated model accuracy ([0-9.]+)", out)]
    assert len(accuracies) == 3
    # chance is 0.1; measured 0.80-0.88 at ε = 2 over five rounds
    assert all(a > 0.5 for a in accuracies), out
