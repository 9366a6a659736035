"""Mutation testing of the security and privacy core, one module at a time.

A test suite shows a protection only if it fails when the protection is removed.
This script asks mutmut (https://github.com/boxed/mutmut) to make small changes
to one target module at a time and runs *that module's own tests* against each
change; a mutant that no test notices ("survived") is either a missing test or
an equivalent change, and docs/mutation.md records which.

Each target runs in a throw-away copy of the project (mutmut writes its mutated
tree to ``mutants/``), so the working tree is never touched. Not part of
``.ci/run``: a full run takes minutes per module.

    pip install -e '.[dev]'             # brings mutmut
    python bench/mutation.py --list     # the targets and their tests
    python bench/mutation.py hazmat/shamir.py wire.py --max-children 1
    python bench/mutation.py --all --time-limit 900 --show-survivors
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Target module (relative to securefl/) -> the test files that are its own tests.
TARGETS: dict[str, list[str]] = {
    "hazmat/shamir.py": ["tests/hazmat/test_hazmat_shamir.py"],
    "hazmat/prg.py": ["tests/hazmat/test_hazmat_prg.py", "tests/hazmat/test_hazmat_fast_paths.py"],
    "hazmat/quantize.py": [
        "tests/hazmat/test_hazmat_quantize.py",
        "tests/hazmat/test_hazmat_fast_paths.py",
    ],
    "hazmat/keys.py": ["tests/hazmat/test_hazmat_keys.py"],
    "hazmat/aead.py": ["tests/hazmat/test_hazmat_aead.py"],
    "hazmat/sign.py": ["tests/hazmat/test_hazmat_sign.py"],
    "hazmat/dgauss.py": ["tests/hazmat/test_hazmat_dgauss.py"],
    "hazmat/_encoding.py": [
        "tests/hazmat/test_hazmat_sign.py",
        "tests/hazmat/test_hazmat_package.py",
    ],
    "hazmat/_secret.py": ["tests/hazmat/test_hazmat_secret.py"],
    "wire.py": ["tests/core/test_wire.py", "tests/core/test_wire_limits.py"],
}

STATUSES = ("killed", "survived", "timeout", "no tests", "suspicious", "skipped", "segfault")
_RESULT_LINE = re.compile(r"^\s+(\S+): (.+)$")


def _mutmut_section(module: str, tests: list[str]) -> str:
    """The [tool.mutmut] table for one target: mutate only it, run only its tests."""
    selection = ", ".join(f'"{t}"' for t in tests)
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["securefl"]\n'
        f'only_mutate = ["securefl/{module}"]\n'
        f"pytest_add_cli_args_test_selection = [{selection}]\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]\n'
        "use_git_change_detection = false\n"
    )


def _prepare(workdir: Path, module: str, tests: list[str]) -> None:
    shutil.copytree(
        ROOT / "securefl", workdir / "securefl", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(ROOT / "tests", workdir / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (workdir / "pyproject.toml").write_text(
        pyproject + _mutmut_section(module, tests), encoding="utf-8"
    )


def _mutmut(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )


def _run_bounded(workdir: Path, max_children: int, time_limit: float) -> bool:
    """``mutmut run`` in its own process group, stopped with all its workers at the limit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        proc.wait(timeout=time_limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        return False
    return True


def run_target(
    module: str, *, max_children: int, time_limit: float, show_survivors: bool
) -> Counter[str]:
    """Mutate one module, run its tests against each mutant, return the verdict counts."""
    tests = TARGETS[module]
    with tempfile.TemporaryDirectory(prefix="securefl-mut-") as tmp:
        workdir = Path(tmp)
        _prepare(workdir, module, tests)
        if not _run_bounded(workdir, max_children, time_limit):
            print(
                f"{module}: time limit {time_limit:.0f} s reached; counting the mutants tried",
                file=sys.stderr,
            )
        out = _mutmut(workdir, "results", "--all", "true").stdout
        verdicts: dict[str, str] = {}
        for line in out.splitlines():
            match = _RESULT_LINE.match(line)
            if match:
                verdicts[match.group(1)] = match.group(2).strip()
        for name, status in sorted(verdicts.items()):
            if status in ("killed", "timeout", "not checked"):
                continue
            diff = _mutmut(workdir, "show", name).stdout
            if status == "survived" and _message_only(diff):
                verdicts[name] = "message only"
            elif show_survivors:
                print(diff)
    return Counter(verdicts.values())


def _message_only(diff: str) -> bool:
    """True when a mutant changes only the text of an exception it raises.

    Tests assert the property (the call is refused, with the right error class),
    not the wording, so such mutants are counted apart rather than as survivors.
    """
    removed = [
        ln[1:].strip()
        for ln in diff.splitlines()
        if ln.startswith("-") and not ln.startswith("---")
    ]
    added = [
        ln[1:].strip()
        for ln in diff.splitlines()
        if ln.startswith("+") and not ln.startswith("+++")
    ]
    if len(removed) != 1 or len(added) != 1:
        return False
    before, after = removed[0], added[0]
    head = re.match(r"raise (\w+)\(", before)
    return bool(head) and after.startswith(head.group(0)) if head else False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "targets", nargs="*", help="modules relative to securefl/, e.g. hazmat/shamir.py"
    )
    parser.add_argument("--all", action="store_true", help="every target in TARGETS")
    parser.add_argument("--list", action="store_true", help="print the targets and their tests")
    parser.add_argument(
        "--max-children", type=int, default=1, help="parallel test processes (default 1)"
    )
    parser.add_argument(
        "--time-limit", type=float, default=600.0, help="seconds per module (default 600)"
    )
    parser.add_argument(
        "--show-survivors", action="store_true", help="print the diff of every survivor"
    )
    args = parser.parse_args(argv)
    if args.list:
        for module, tests in TARGETS.items():
            print(f"{module}: {' '.join(tests)}")
        return 0
    targets = list(TARGETS) if args.all else args.targets
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        parser.error(f"targets must be among: {', '.join(TARGETS)} (got {unknown or 'none'})")
    rows = []
    for module in targets:
        counts = run_target(
            module,
            max_children=args.max_children,
            time_limit=args.time_limit,
            show_survivors=args.show_survivors,
        )
        caught = counts["killed"] + counts["timeout"]
        tried = sum(counts[s] for s in STATUSES)  # message-only mutants are left out
        other = {
            s: n
            for s, n in counts.items()
            if s not in ("killed", "survived", "timeout", "message only")
        }
        rate = f"{100 * caught / tried:.1f} %" if tried else "-"
        rows.append(
            (
                module,
                counts["killed"],
                counts["survived"],
                counts["timeout"],
                counts["message only"],
                ", ".join(f"{n} {s}" for s, n in sorted(other.items())) or "-",
                rate,
            )
        )
    header = ("module", "killed", "survived", "timeout", "message only", "other", "kill rate")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
