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
    python bench/mutation.py secagg/_unmask.py --sample 120      # a fixed sample
    python bench/mutation.py hazmat/quantize.py --mutants 'securefl.hazmat.quantize.x_quantize*'

mutmut and the tests it starts run at the lowest CPU priority (``nice 19``,
``--nice`` to change): the run shares the machine. ``--sample N`` runs a
fixed subset of N mutants for a large module, the same one every time for
the same ``--seed`` and the same source (a sorted list of mutmut's names,
sampled with :class:`random.Random`); the table then says how many were run
of how many exist.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SECAGG_TESTS = [
    "tests/secagg/test_secagg_dropout.py",
    "tests/secagg/test_secagg_malicious.py",
    "tests/secagg/test_secagg_collusion.py",
    "tests/secagg/test_secagg_self_mask.py",
    "tests/secagg/test_secagg_vectors.py",
    "tests/secagg/test_secagg_server_view.py",
    "tests/secagg/test_secagg_properties.py",
    "tests/secagg/test_secagg_inputs.py",
    "tests/secagg/test_secagg_retry_sets.py",
]

# Tests written for the survivors of the secagg modules' runs (fast, module-level).
_SECAGG_MUT_TESTS = sorted(
    f"tests/secagg/{p.name}" for p in (ROOT / "tests" / "secagg").glob("test_secagg_mut_*.py")
)
# The mode factories and the neighbourhood round on top of the protocol; the slow exhaustive
# searches (test_secagg_review.py, test_secagg_runs.py) stay out.
_SECAGG_MODE_TESTS = [*_SECAGG_TESTS, "tests/secagg/test_secagg_review2.py", *_SECAGG_MUT_TESTS]
_SECAGG_PLAN_TESTS = [*_SECAGG_MODE_TESTS, "tests/secagg/test_secagg_neighbourhood.py"]

_HE_TESTS = sorted(f"tests/he/{p.name}" for p in (ROOT / "tests" / "he").glob("test_he_*.py"))
_LEDGER_TESTS = [
    "tests/dp/test_dp_ledger.py",
    "tests/dp/test_dp_ledger_migration.py",
    "tests/dp/test_dp_ledger_race.py",
    "tests/dp/test_dp_ledger_edges.py",
    "tests/dp/test_dp_delta.py",
]
_ACCOUNTING_TESTS = [
    "tests/dp/test_dp_accounting.py",
    "tests/dp/test_dp_calibration_many.py",
    "tests/dp/test_dp_delta.py",
    "tests/dp/test_dp_events.py",
    "tests/dp/test_dp_distributed_events.py",
]

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
    "hazmat/dgauss.py": [
        "tests/hazmat/test_hazmat_dgauss.py",
        "tests/hazmat/test_hazmat_dgauss_edges.py",
    ],
    "hazmat/skellam.py": [
        "tests/hazmat/test_hazmat_skellam.py",
        "tests/hazmat/test_hazmat_skellam_edges.py",
    ],
    "hazmat/bls.py": ["tests/hazmat/test_bls.py", "tests/hazmat/test_bls_mut.py"],
    "hazmat/_encoding.py": [
        "tests/hazmat/test_hazmat_sign.py",
        "tests/hazmat/test_hazmat_package.py",
    ],
    "hazmat/_secret.py": ["tests/hazmat/test_hazmat_secret.py"],
    "wire.py": [
        "tests/core/test_wire.py",
        "tests/core/test_wire_limits.py",
        "tests/core/test_wire_edges.py",
    ],
    "he/_decrypt.py": [
        "tests/he/test_he_authenticity.py",
        "tests/he/test_he_cheating_weight.py",
        "tests/he/test_he_open_edges.py",
        "tests/he/test_he_review.py",
        "tests/he/test_he_review2.py",
        "tests/he/test_he_cohort_limit.py",
    ],
    "he/_fixed_point.py": [
        "tests/he/test_he_fixed_point.py",
        "tests/he/test_he_fixed_point_edges.py",
        "tests/he/test_he_upload_view.py",
        "tests/he/test_he_authenticity.py",
    ],
    **{f"he/{name}.py": _HE_TESTS for name in ("_delivery", "_presets")},
    # The modules' own fast tests: the whole he suite allowed only 15 to 25 mutants in 10 min.
    "he/_frame.py": [
        "tests/he/test_he_malformed.py",
        "tests/he/test_he_aggregate.py",
        "tests/he/test_he_authenticity.py",
        "tests/he/test_he_vectors.py",
        "tests/he/test_he_mut_codec.py",
        *sorted(f"tests/he/{p.name}" for p in (ROOT / "tests" / "he").glob("test_he_mut3_*.py")),
    ],
    "he/_context.py": [
        "tests/he/test_he_contexts.py",
        "tests/he/test_he_context_labels.py",
        "tests/he/test_he_delivery.py",
        "tests/he/test_he_simulate_keys.py",
        *sorted(f"tests/he/{p.name}" for p in (ROOT / "tests" / "he").glob("test_he_mut3_*.py")),
    ],
    "he/_trust.py": [
        "tests/he/test_he_contexts.py",
        "tests/he/test_he_delivery.py",
        "tests/he/test_he_aggregate.py",
        "tests/he/test_he_authenticity.py",
        "tests/he/test_he_vectors.py",
        "tests/he/test_he_mut_relay.py",
        *sorted(f"tests/he/{p.name}" for p in (ROOT / "tests" / "he").glob("test_he_mut3_*.py")),
    ],
    # Each module's own fast tests (the review files run a whole federation per test).
    "he/_codec.py": [
        "tests/he/test_he_aggregate.py",
        "tests/he/test_he_authenticity.py",
        "tests/he/test_he_malformed.py",
        "tests/he/test_he_pool.py",
        "tests/he/test_he_vectors.py",
        "tests/he/test_he_mut_codec.py",
    ],
    "he/_keymaker_store.py": [
        "tests/he/test_he_keymaker_restart.py",
        "tests/he/test_he_mut_keymaker_store.py",
    ],
    "he/_messages.py": [
        "tests/he/test_he_vectors.py",
        "tests/he/test_he_aggregate.py",
        "tests/he/test_he_authenticity.py",
        "tests/he/test_he_malformed.py",
        "tests/he/test_he_mut_messages.py",
    ],
    "he/_pool.py": ["tests/he/test_he_pool.py", "tests/he/test_he_mut_pool.py"],
    "he/_relay.py": [
        "tests/he/test_he_delivery.py",
        "tests/he/test_he_simulate_keys.py",
        "tests/he/test_he_keymaker_restart.py",
        "tests/he/test_he_contexts.py",
        "tests/he/test_he_mut_relay.py",
    ],
    "he/_server.py": [
        "tests/he/test_he_authenticity.py",
        "tests/he/test_he_aggregate.py",
        "tests/he/test_he_malformed.py",
        "tests/he/test_he_cheating_weight.py",
        "tests/he/test_he_cohort_limit.py",
        "tests/he/test_he_contexts.py",
        "tests/he/test_he_mut_server.py",
    ],
    "he/_site.py": [
        "tests/he/test_he_authenticity.py",
        "tests/he/test_he_cheating_weight.py",
        "tests/he/test_he_upload_view.py",
        "tests/he/test_he_contexts.py",
        "tests/he/test_he_pool.py",
        "tests/he/test_he_mut_site.py",
    ],
    "dp/ledger.py": _LEDGER_TESTS,
    "dp/_ledger_schema.py": _LEDGER_TESTS,
    "dp/accounting.py": _ACCOUNTING_TESTS,
    # Calibration's own fast tests: with the accountants' whole list (seconds of PRV per
    # test) 10 minutes allowed 3 to 4 mutants.
    "dp/calibration.py": sorted(
        f"tests/dp/{p.name}" for p in (ROOT / "tests" / "dp").glob("test_dp_mut3_*.py")
    ),
    "dp/calibration_many.py": [
        "tests/dp/test_dp_calibration_many.py",
        "tests/dp/test_dp_mut_calibration_many.py",
    ],
    "dp/privatize.py": [
        "tests/dp/test_dp_privatize.py",
        "tests/dp/test_dp_secure_rng.py",
        "tests/dp/test_dp_sampling_and_seeding.py",
        "tests/dp/test_dp_mut_privatize.py",
    ],
    "dp/skellam_subsampling.py": [
        "tests/dp/test_dp_skellam_subsampling.py",
        "tests/dp/test_dp_skellam_subsampling_exact.py",
        "tests/dp/test_dp_mut_skellam.py",
    ],
    "dp/skellam_accounting.py": [
        "tests/dp/test_dp_skellam.py",
        "tests/dp/test_dp_skellam_subsampling_exact.py",
        "tests/dp/test_dp_distributed_events.py",
        "tests/dp/test_dp_mut_skellam.py",
    ],
    "secagg/_unmask.py": _SECAGG_TESTS,
    "secagg/_site.py": _SECAGG_PLAN_TESTS,
    "secagg/_server.py": _SECAGG_PLAN_TESTS,
    "secagg/_messages.py": _SECAGG_PLAN_TESTS,
    "secagg/_keys.py": [*_SECAGG_TESTS, *_SECAGG_MUT_TESTS],
    "secagg/_mode.py": _SECAGG_MODE_TESTS,
    "secagg/_state.py": ["tests/secagg/test_secagg_round_log.py", *_SECAGG_MODE_TESTS],
    "secagg/_config.py": _SECAGG_PLAN_TESTS,
    "secagg/_plan.py": _SECAGG_PLAN_TESTS,
    "secagg/_multisig.py": [
        "tests/secagg/test_secagg_neighbourhood_bls.py",
        "tests/secagg/test_secagg_neighbourhood_quorum.py",
        "tests/secagg/test_secagg_neighbourhood.py",
        "tests/secagg/test_secagg_mut_multisig.py",
    ],
    "secagg/_site_lists.py": [
        *_SECAGG_TESTS,
        "tests/secagg/test_secagg_neighbourhood.py",
        *_SECAGG_MUT_TESTS,
    ],
    "secagg/_masked_with.py": [
        "tests/secagg/test_secagg_masked_with.py",
        "tests/secagg/test_secagg_isolation.py",
        "tests/secagg/test_secagg_neighbourhood.py",
        "tests/secagg/test_secagg_mut_masked_with.py",
    ],
    "secagg/_integer.py": [
        "tests/secagg/test_secagg_integer.py",
        "tests/secagg/test_secagg_round_log.py",
        *_SECAGG_MUT_TESTS,
    ],
    "dp/_secure_opacus.py": [
        "tests/dp/test_dp_secure_rng.py",
        "tests/dp/test_dp_sampling_and_seeding.py",
        "tests/dp/test_dp_mut_secure_opacus.py",
    ],
    "dp/noise.py": ["tests/dp/test_dp_noise.py", "tests/dp/test_dp_secure_rng.py"],
    "dp/events.py": [
        "tests/dp/test_dp_events.py",
        "tests/dp/test_dp_distributed_events.py",
        "tests/dp/test_dp_mut_events.py",
    ],
    "reports/chain.py": [
        "tests/reports/test_reports_records.py",
        "tests/reports/test_reports_tamper.py",
        "tests/reports/test_reports_must_fail.py",
        "tests/reports/test_reports_replay.py",
        "tests/reports/test_reports_rewrite.py",
        "tests/reports/test_reports_server_log.py",
    ],
    "reports/records.py": [
        "tests/reports/test_reports_records.py",
        "tests/reports/test_reports_records_fields.py",
        "tests/reports/test_reports_tamper.py",
        "tests/reports/test_reports_must_fail.py",
    ],
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
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-m", "not slow"]\n'
        'also_copy = ["docs", "threat_models", "examples"]\n'
        "use_git_change_detection = false\n"
    )


def _prepare(workdir: Path, module: str, tests: list[str]) -> None:
    shutil.copytree(
        ROOT / "securefl", workdir / "securefl", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(ROOT / "tests", workdir / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    for extra in ("docs", "threat_models", "examples"):  # files some tests read
        shutil.copytree(ROOT / extra, workdir / extra, ignore=shutil.ignore_patterns("__pycache__"))
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


def _niced(nice: int) -> list[str]:
    """The ``nice`` prefix (POSIX) that lowers the run's CPU priority, if asked and available."""
    tool = shutil.which("nice")
    return [tool, "-n", str(nice)] if nice and tool else []


def _run_bounded(
    workdir: Path, max_children: int, time_limit: float, names: list[str], nice: int
) -> bool:
    """``mutmut run`` in its own process group, stopped with all its workers at the limit."""
    command = [
        *_niced(nice),
        sys.executable,
        "-m",
        "mutmut",
        "run",
        f"--max-children={max_children}",
    ]
    # mutmut forks the test process once per mutant; a fork of a process whose OpenMP
    # pool is running (torch, after one training step) deadlocks in the child, and every
    # mutant of a module trained in its tests would time out. One OpenMP thread avoids it.
    proc = subprocess.Popen(
        [*command, *names],
        cwd=workdir,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
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


def _verdicts(workdir: Path) -> dict[str, str]:
    out = _mutmut(workdir, "results", "--all", "true").stdout
    verdicts: dict[str, str] = {}
    for line in out.splitlines():
        match = _RESULT_LINE.match(line)
        if match:
            verdicts[match.group(1)] = match.group(2).strip()
    return verdicts


def _all_mutants(workdir: Path, max_children: int, nice: int) -> list[str]:
    """Every mutant's name, without running any (a run filtered to a name that cannot exist
    generates the mutants and the test statistics, then stops)."""
    _run_bounded(workdir, max_children, 3600.0, ["securefl.no-such-mutant"], nice)
    return sorted(_verdicts(workdir))


def sample(names: list[str], size: int, seed: int) -> list[str]:
    """A fixed subset: the same names for the same sorted list, size and seed."""
    if size >= len(names):
        return list(names)
    return sorted(random.Random(seed).sample(sorted(names), size))


def run_target(
    module: str,
    *,
    max_children: int,
    time_limit: float,
    show_survivors: bool,
    sample_size: int | None = None,
    seed: int = 14,
    mutants: list[str] | None = None,
    nice: int = 19,
) -> tuple[Counter[str], int]:
    """Mutate one module, run its tests against each mutant (or a sample); return the verdict
    counts and how many mutants the module has."""
    tests = [t for t in TARGETS[module] if (ROOT / t).exists()]  # a listed file may be new
    with tempfile.TemporaryDirectory(prefix="securefl-mut-") as tmp:
        workdir = Path(tmp)
        _prepare(workdir, module, tests)
        names: list[str] = list(mutants or [])
        total = 0
        if sample_size is not None:
            every = _all_mutants(workdir, max_children, nice)
            total = len(every)
            names = sample(every, sample_size, seed)
        if not _run_bounded(workdir, max_children, time_limit, names, nice):
            print(
                f"{module}: time limit {time_limit:.0f} s reached; counting the mutants tried",
                file=sys.stderr,
            )
        verdicts = _verdicts(workdir)
        total = total or len(verdicts)
        if names:  # only the chosen ones count (a pattern may name several)
            chosen = [v for v in verdicts if any(fnmatch.fnmatch(v, n) for n in names)]
            verdicts = {v: verdicts[v] for v in chosen}
        if verdicts and all(v == "not checked" for v in verdicts.values()):
            print(
                f"{module}: no mutant was run; mutmut's first, unmutated run of the tests "
                f"probably failed (a test needing a file not copied?): run `mutmut run` in a "
                f"copy made by _prepare() to see its output",
                file=sys.stderr,
            )
        for name, status in sorted(verdicts.items()):
            if status in ("killed", "timeout", "not checked"):
                continue
            diff = _mutmut(workdir, "show", name).stdout
            if status == "survived" and _message_only(diff):
                verdicts[name] = "message only"
            elif show_survivors:
                print(diff, flush=True)
    return Counter(verdicts.values()), total


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
    parser.add_argument(
        "--sample", type=int, default=None, help="run a fixed sample of this many mutants"
    )
    parser.add_argument("--seed", type=int, default=14, help="the sample's seed (default 14)")
    parser.add_argument(
        "--mutants", nargs="+", default=None, help="run only these mutmut names (globs allowed)"
    )
    parser.add_argument(
        "--nice", type=int, default=19, help="CPU niceness of mutmut and its tests (default 19)"
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
        counts, total = run_target(
            module,
            max_children=args.max_children,
            time_limit=args.time_limit,
            show_survivors=args.show_survivors,
            sample_size=args.sample,
            seed=args.seed,
            mutants=args.mutants,
            nice=args.nice,
        )
        caught = counts["killed"] + counts["timeout"]
        tried = sum(counts[s] for s in STATUSES)  # message-only mutants are left out
        other = {
            s: n
            for s, n in counts.items()
            if s not in ("killed", "survived", "timeout", "message only", "not checked")
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
                f"{sum(counts.values()) - counts['not checked']} of {total}",
                rate,
            )
        )
    header = (
        "module",
        "killed",
        "survived",
        "timeout",
        "message only",
        "other",
        "run",
        "kill rate",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
