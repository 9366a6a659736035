"""The example a user copies from must keep working."""

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
