"""Rows marked *rechecked* in the threat models are the ones bench/recheck_claims.py rechecks.

A mark says: this row's protection was removed (by the named entry of
``bench/recheck_claims.py``) and its cited tests went red. The mark must
name an entry that exists and that points at that very row, or the mark
claims more than was done.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARK = re.compile(r"rechecked by removal: `([\w-]+)`")


def _rows():
    spec = importlib.util.spec_from_file_location(
        "recheck_claims", ROOT / "bench/recheck_claims.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return {row.key: row for row in module.ROWS}


def test_every_recheck_mark_names_an_entry_for_its_own_row() -> None:
    rows = _rows()
    marks = 0
    for page in sorted((ROOT / "threat_models").glob("*.md")):
        if page.name == "README.md":  # explains the mark; holds no claims
            continue
        for line in page.read_text(encoding="utf-8").splitlines():
            for key in MARK.findall(line):
                marks += 1
                assert key in rows, f"{page.name}: unknown recheck entry {key!r}"
                row = rows[key]
                assert row.page == page.name and line.startswith(f"| {row.claim}"), (
                    f"{page.name}: {key!r} is marked on another row than the one it rechecks"
                )
    assert marks > 0


def test_every_removal_still_applies_to_the_code_it_names() -> None:
    """Each removal's text occurs exactly once in its file, so a mark keeps meaning what it
    says after the code moves (a refactor that moves a check must move its removal too).

    Cheap: it reads files and runs no test; ``bench/recheck_claims.py`` is what runs them.
    """
    stale = []
    for key, row in _rows().items():
        for patch in row.removals:
            for removal in patch if isinstance(patch, tuple) else (patch,):
                found = (ROOT / removal.path).read_text(encoding="utf-8").count(removal.old)
                if found != 1:
                    stale.append(f"{key}: {removal.path} holds it {found} times: {removal.old!r}")
    assert not stale, "\n".join(stale)
