"""The exact adversary search for the neighbourhood round over a grid of small rings.

Run ``python bench/neighbourhood_grid.py`` (``--time S`` caps each search,
default 120 s; ``--case n,k,t,m`` selects rows). For each ring (n sites,
Harary degree k, threshold t, cohort cap m, ℓ = min(m, k + 1 - t)) it asks
``tests/secagg/neighbourhood_search.py`` for the fewest colluders that give
the server a *split view* (both secrets of one honest site), a *partial
sum* (the sum of a set of honest sites leaving out more than m of them)
and a *cut* (a partial sum leaving out a site that every releasing site
lists as surviving), under each release check: ``as built`` (n - m of the
cohort and t of the holders signed the list; modelled below n - 2m
colluders only, where every release is under one list), ``old all-but-ℓ``
(the round's former check: all but ℓ of the holders signed), ``old
+senders`` (that check with a signed share-sender check added). It probes
0, 1, 2, ... colluders in turn: ``none ≤`` is the largest count up to which
every probe proved that no breach exists (-1: not even 0), ``found`` the
first count with a breach (``-``: none up to the probe limit). ``tol`` is
``MaskPlan.colluders_tolerated`` and ``k-m-ℓ+1`` what isolating one site by
withheld share senders would cost without the masked-with claims, which
the round as built has (tests/secagg/test_secagg_isolation.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "secagg")]

from neighbourhood_search import search  # noqa: E402

CHECKS = {  # name: (signers, rules)
    "as built": ("quorum", frozenset()),
    "old all-but-ℓ": ("local", frozenset()),
    "old +senders": ("local", frozenset({"signed_senders"})),
}
CASES = [(14, 4, 4, 1), (16, 6, 5, 1), (16, 6, 5, 2), (18, 6, 6, 2), (20, 8, 6, 2), (24, 8, 7, 2)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time", type=float, default=120.0)
    ap.add_argument("--case", action="append", default=[])
    args = ap.parse_args()
    cases = [tuple(int(x) for x in c.split(",")) for c in args.case] or CASES
    print(
        f"{'n':>3} {'k':>3} {'t':>3} {'m':>3} {'ℓ':>3} {'tol':>4} {'k-m-ℓ+1':>8}  "
        f"{'breach':<8} {'check':<14} {'none ≤':>6} {'found':>5} {'secs':>6}"
    )
    for n, k, t, m in cases:
        ell = min(m, k + 1 - t)
        tol = max(min(n - 2 * m, t, max(k - m, 2 * t - k - 2)) - 1, 0)
        for kind in ("split", "partial", "cut"):
            for name, (signers, rules) in CHECKS.items():
                t0 = time.perf_counter()
                none_upto, found, settled = -1, "-", True
                limit = n - 2 * m if signers == "quorum" else 2 * t - k + 1
                for cap in range(0, min(limit, t + 1)):
                    try:
                        hit = search(
                            n,
                            k,
                            t,
                            m,
                            ell,
                            kind=kind,
                            rules=rules,
                            signers=signers,
                            max_colluders=cap,
                            time_limit=args.time,
                        )
                    except RuntimeError:  # the time cap: this count is unsettled
                        settled = False
                        continue
                    if hit is not None:
                        found = str(len(hit.colluders))
                        break
                    if settled:
                        none_upto = cap
                secs = time.perf_counter() - t0
                print(
                    f"{n:>3} {k:>3} {t:>3} {m:>3} {ell:>3} {tol:>4} {k - m - ell + 1:>8}  "
                    f"{kind:<8} {name:<14} {none_upto:>6} {found:>5} {secs:>6.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
