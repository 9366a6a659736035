"""Fuzz every decoder that takes foreign bytes, 100,000 cases by default, and print a report.

    PYTHONPATH=. python tests/fuzz/run_fuzz.py [--cases 100000] [--markdown]

Each decoder runs in its own child process (see ``fuzz_harness.py``), so a
native crash in TenSEAL ends that decoder's run and is reported with the
input that caused it, and the other decoders still run. The cases are split
evenly across decoders; randomness is fresh on every run (hypothesis, not
derandomized), unlike the test suite. Exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_harness import Outcome, run_in_child
from fuzz_targets import NATIVE, pure_targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000, help="total cases (default 100000)")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("targets", nargs="*", help="only these decoders")
    args = parser.parse_args()
    names = args.targets or [*sorted(pure_targets()), *NATIVE]
    per = -(-args.cases // len(names))
    outcomes: list[Outcome] = []
    start = time.monotonic()
    for name in names:
        outcome = run_in_child([name], per, derandomize=False)[0]
        outcome.name = name
        outcomes.append(outcome)
        print(f"{name}: {outcome.cases} cases, {len(outcome.failures)} failures", file=sys.stderr)
    _print(outcomes, time.monotonic() - start, markdown=args.markdown)
    return 1 if any(o.failures or o.crashed for o in outcomes) else 0


def _print(outcomes: list[Outcome], seconds: float, *, markdown: bool) -> None:
    rows = [
        (
            o.name,
            str(o.cases),
            str(len(o.failures)),
            "yes" if o.crashed else "no",
            f"{o.seconds:.1f}",
        )
        for o in outcomes
    ]
    total = sum(o.cases for o in outcomes)
    failed = sum(len(o.failures) for o in outcomes)
    rows.append(
        ("total", str(total), str(failed), str(sum(o.crashed for o in outcomes)), f"{seconds:.1f}")
    )
    head = ("decoder", "cases", "failures", "crashed", "seconds")
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("| --- | ---: | ---: | --- | ---: |")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        for row in [head, *rows]:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    for o in outcomes:
        for failure in o.failures[:5]:
            print(f"FAILED {o.name}: {failure}")


if __name__ == "__main__":
    raise SystemExit(main())
