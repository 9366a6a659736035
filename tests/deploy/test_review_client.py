"""Adversarial review of ``securefl client``: a hostile local user and the client's directory."""

import importlib
import sys

import pytest

from securefl.deploy.client import load_train_function


@pytest.fixture()
def clean_path(monkeypatch):
    """sys.path and sys.modules restored after the test (the loader changes both)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        sys.modules.pop(name, None)


def test_a_file_in_the_working_directory_cannot_replace_a_library_imported_later(
    tmp_path, monkeypatch, clean_path
):
    """Loading ``--train my_trainer:train`` must not put the directory before the libraries.

    The client imports much after the user's function (torch, opacus, tenseal
    are imported lazily, when the site is built). With the working directory
    first on sys.path, anyone who can drop a file there (a shared or
    world-writable folder, a data directory others fill) names it after one of
    those libraries and runs code in the process that holds the site's private
    keys. Here ``review_lib`` stands for such a library, installed but not yet
    imported when the function is loaded.
    """
    installed = tmp_path / "site-packages"
    installed.mkdir()
    (installed / "review_lib.py").write_text("GENUINE = True\n")
    monkeypatch.syspath_prepend(str(installed))
    work = tmp_path / "work"
    work.mkdir()
    (work / "my_trainer.py").write_text("def train(site):\n    return site\n")
    (work / "review_lib.py").write_text("GENUINE = False\n")  # the planted file
    monkeypatch.chdir(work)

    function = load_train_function("my_trainer:train")
    assert function("x") == "x"  # the user's own module is still found in the directory
    lib = importlib.import_module("review_lib")
    assert lib.GENUINE, "a file planted in the working directory replaced an installed library"
