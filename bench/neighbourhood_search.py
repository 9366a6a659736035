"""The exact adversary search for the neighbourhood round over a grid of small rings.

Run ``python bench/neighbourhood_search.py`` (``--time S`` caps each search,
default 120 s; ``--case n,k,t,m`` selects rows). For each ring (n sites,
Harary degree k, threshold t, cohort cap m, ℓ = min(m, k + 1 - t)) it asks
``tests/secagg/neighbourhood_search.py`` for the fewest colluders that give
the server a *split view* (both secrets of one honest site) and a *partial
sum* (the sum of a set of honest sites leaving out more than m of them)
and a *cut* (a partial sum leaving out a site that every releasing site
lists as surviving), with the site checks as built, with the "all but ℓ of
the holders signed" check removed, and with the proposed signed
share-sender check added (``+senders``). ``found`` is the best breach within the time cap,
``proven`` whether the search closed the gap (then ``found`` is the exact
minimum); ``2t-k-1`` is Lemma 1's split-view count and ``k-2ℓ`` the cost of
the edge-deletion cut (threat_models/mask.md, "The neighbourhood round").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "secagg")]

from neighbourhood_search import search  # noqa: E402

RULES = {
    frozenset(): "as built",
    frozenset({"local_signers"}): "no all-but-ℓ",
    frozenset({"signed_senders"}): "+senders",
}
CASES = [(14, 4, 4, 1), (16, 6, 5, 1), (16, 6, 5, 2), (18, 6, 6, 2), (20, 8, 6, 2), (24, 8, 7, 2)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time", type=float, default=120.0)
    ap.add_argument("--case", action="append", default=[])
    args = ap.parse_args()
    cases = [tuple(int(x) for x in c.split(",")) for c in args.case] or CASES
    print(
        f"{'n':>3} {'k':>3} {'t':>3} {'m':>3} {'ℓ':>3} {'2t-k-1':>7} {'k-2ℓ':>5}  "
        f"{'breach':<8} {'rules':<14} {'found':>5} {'proven':>6} {'secs':>6}"
    )
    for n, k, t, m in cases:
        ell = min(m, k + 1 - t)
        for kind in ("split", "partial", "cut"):
            for rules in RULES:
                t0 = time.perf_counter()
                found = search(n, k, t, m, ell, kind=kind, rules=rules, time_limit=args.time)
                secs = time.perf_counter() - t0
                count = "-" if found is None else str(len(found.colluders))
                proven = "yes" if found is None or found.proven else "no"
                name = RULES[rules]
                print(
                    f"{n:>3} {k:>3} {t:>3} {m:>3} {ell:>3} {2 * t - k - 1:>7} {k - 2 * ell:>5}  "
                    f"{kind:<8} {name:<14} {count:>5} {proven:>6} {secs:>6.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
