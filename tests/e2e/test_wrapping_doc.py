"""docs/wrapping.md: its complete example runs, passes every required argument, and counts
changed lines the way the README and the examples do."""

import inspect
import re
from pathlib import Path

import pytest

from securefl.simulation import LocalFederation

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "wrapping.md").read_text(encoding="utf-8")

pytestmark = pytest.mark.slow


def _python_block() -> str:
    return DOC.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_complete_example_passes_every_required_argument_and_runs(capsys):
    code = _python_block()
    required = [
        name
        for name, p in inspect.signature(LocalFederation).parameters.items()
        if p.default is inspect.Parameter.empty
    ]
    assert "max_weight" in required
    for name in required:
        assert f"{name}=" in code, name
        assert re.search(rf"^\| [^|]*`{name}`", DOC, re.M), name  # and explained in the table
    exec(compile(code, "docs/wrapping.md", "exec"), {"__name__": "wrapping_doc"})
    assert "['aggregated', 'aggregated', 'aggregated'] {}" in capsys.readouterr().out


def test_changed_lines_are_counted_the_same_everywhere():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = (ROOT / "examples" / "wrap_existing_trainer.py").read_text(encoding="utf-8")
    assert "**Four lines change**" in DOC and "Four changed lines" in readme
    assert "four changed lines" in example
    # the diff in the doc and the README's snippet number the same four lines
    diff = DOC.split("```diff\n", 1)[1].split("```", 1)[0]
    assert re.findall(r"# (\d)\b", diff) == ["1", "2", "3", "4"]
    snippet = readme[readme.index("## Wrapping your own trainer") :].split("```")[1]
    assert re.findall(r"# [+~] (\d)", snippet) == ["1", "2", "3", "4"]
    # each example marks the same four lines: the site argument and three in the loop
    for name in ("wrap_existing_trainer.py", "digits_cnn.py"):
        code = (ROOT / "examples" / name).read_text(encoding="utf-8")
        marked = [line for line in code.splitlines() if re.search(r"\S.*  # securefl", line)]
        assert len(marked) == 4, marked
        assert "def train(" in marked[0] and "site.privatize" in marked[1]
        assert "site.rounds" in marked[2] and "rnd.submit" in marked[3]
