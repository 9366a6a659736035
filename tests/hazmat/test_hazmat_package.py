"""The hazmat package: deliberate exports, warnings, and the import room."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from types import ModuleType

import pytest

import securefl.hazmat as hazmat

PACKAGE_DIR = Path(hazmat.__file__).parent
MODULES = sorted(p for p in PACKAGE_DIR.glob("*.py"))


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        n
        for n, v in vars(hazmat).items()
        if not n.startswith("_") and not isinstance(v, ModuleType) and n != "annotations"
    }
    assert set(hazmat.__all__) == public
    # The function shadows its submodule on the package; the module stays importable.
    assert callable(hazmat.quantize)
    assert importlib.import_module("securefl.hazmat.quantize").quantize is hazmat.quantize


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_every_module_opens_with_a_warning(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc is not None
    assert doc.split("\n\n")[1].startswith(".. warning::")  # right after the summary line
    assert "hazmat" in doc and "easy-to-misuse" in doc


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_nothing_from_securefl_but_errors(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            if name.startswith("securefl"):
                assert name == "securefl.errors" or name.startswith("securefl.hazmat"), name


@pytest.mark.parametrize("name", ["aead", "keys", "prg", "quantize", "shamir", "sign"])
def test_every_module_declares_all(name: str) -> None:
    module = importlib.import_module(f"securefl.hazmat.{name}")
    for exported in module.__all__:
        assert hasattr(module, exported)
