"""Recheck threat-model claims: each cited test must fail when its protection is removed.

A claim row in ``threat_models/*.md`` cites the tests that show it. This
script holds, per row, one or more *removals*: a small textual patch that
takes the protection out of the code (a check made ``False``, a signature
not verified, a constant made fixed). For each removal it copies the
project to a temporary directory, applies the patch there (the working tree
is never touched), runs the row's cited tests (read from the threat model
itself, so the citation and the run cannot drift apart) and expects pytest
to report failures (exit code 1: a test went red, not a collection or
usage error). It also runs the cited tests once without any patch and
expects them green.

The entries live in ``bench/recheck_rows/``, one module per page.

A row is *rechecked* when every one of its removals turns at least one of
its cited tests red. Rows marked ``rechecked`` in the threat models must be
in :data:`ROWS`; run it after changing a protection or its test:

    python bench/recheck_claims.py --list
    python bench/recheck_claims.py he-upload-signature mask-zero-coefficients
    python bench/recheck_claims.py --all

Not part of ``.ci/run``: each row runs its tests twice or more (minutes in all).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from recheck_rows import (  # noqa: E402
    distributed_dp,
    dp,
    he,
    mask,
    provisioning,
    server_state,
    transport,
    wire,
)
from recheck_rows._common import Removal, Row  # noqa: E402

PAGES = (he, mask, dp, wire, transport, provisioning, server_state, distributed_dp)
ROWS: tuple[Row, ...] = tuple(row for page in PAGES for row in page.ROWS)


_CITE = re.compile(r"(tests/[\w/]+\.py)?::(\w+)")


def cited_tests(row: Row) -> list[str]:
    """The node ids the row's "shown by" cell cites (``::name`` continues the last file)."""
    text = (ROOT / "threat_models" / row.page).read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.startswith(f"| {row.claim}")]
    if len(lines) != 1:
        raise SystemExit(f"{row.key}: {len(lines)} rows of {row.page} start with {row.claim!r}")
    cell = lines[0].rsplit(" | ", 1)[-1]
    tests: list[str] = []
    path = ""
    for file, name in _CITE.findall(cell):
        path = file or path
        tests.append(f"{path}::{name}")
    if not tests:
        raise SystemExit(f"{row.key}: the row cites no test")
    return tests


def _pytest(workdir: Path, tests: list[str]) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *tests],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(workdir)},
        capture_output=True,
        text=True,
        check=False,
    )
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.M)
    return proc.returncode, failed


def recheck(row: Row, workdir: Path) -> tuple[bool, list[str]]:
    """Run the row's tests unpatched (green expected), then under each removal (red expected)."""
    tests = cited_tests(row)
    notes = []
    code, failed = _pytest(workdir, tests)
    if code != 0:
        return False, [f"cited tests not green without a patch (exit {code}): {failed}"]
    ok = True
    for patch in row.removals:
        edits = (patch,) if isinstance(patch, Removal) else patch
        originals = {e.path: (workdir / e.path).read_text(encoding="utf-8") for e in edits}
        what = "; ".join(f"{e.path}: {e.old.strip()[:50]!r}" for e in edits)
        try:
            applied = _apply(workdir, edits)
            if applied:
                code, failed = _pytest(workdir, tests)
        finally:
            for path, text in originals.items():
                (workdir / path).write_text(text, encoding="utf-8")
        if not applied:
            ok = False
            notes.append(f"patch does not apply: {what}")
            continue
        red = code == 1 and bool(failed)
        ok = ok and red
        notes.append(f"{'red' if red else f'NOT red (exit {code})'}: {what} -> {failed}")
    return ok, notes


def _apply(workdir: Path, edits: tuple[Removal, ...]) -> bool:
    for edit in edits:
        target = workdir / edit.path
        text = target.read_text(encoding="utf-8")
        if text.count(edit.old) != 1:
            return False
        target.write_text(text.replace(edit.old, edit.new), encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rows", nargs="*", help="row keys (see --list)")
    parser.add_argument("--all", action="store_true", help="every row")
    parser.add_argument("--list", action="store_true", help="print the rows and their tests")
    args = parser.parse_args(argv)
    by_key = {r.key: r for r in ROWS}
    if args.list:
        for row in ROWS:
            print(f"{row.key} ({row.page}): {' '.join(cited_tests(row))}")
        return 0
    chosen = list(ROWS) if args.all else [by_key[k] for k in args.rows if k in by_key]
    unknown = [k for k in args.rows if k not in by_key]
    if unknown or not chosen:
        parser.error(f"unknown or no rows: {unknown}")
    results = []
    with tempfile.TemporaryDirectory(prefix="securefl-claims-") as tmp:
        workdir = Path(tmp) / "project"
        shutil.copytree(
            ROOT,
            workdir,
            ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "mutants", "*.egg-info"),
        )
        for row in chosen:
            ok, notes = recheck(row, workdir)
            results.append((row, ok))
            print(f"{'RECHECKED' if ok else 'NOT SHOWN'} {row.key} ({row.page})", flush=True)
            for note in notes:
                print(f"    {note}", flush=True)
    print("| row | page | removals | result |")  # removals: ways of taking it out
    print("| --- | --- | --- | --- |")
    for row, ok in results:
        verdict = "red under every removal" if ok else "not shown"
        print(f"| `{row.key}` | {row.page} | {len(row.removals)} | {verdict} |")
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
