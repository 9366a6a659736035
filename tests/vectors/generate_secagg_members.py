"""Write tests/vectors/secagg_members.json: the neighbourhood round's survivor bitmap.

Made without securefl: bit i of the bitmap (cohort position i, cohort sorted)
is bit i % 8 of byte i // 8, least significant bit first, and the bitmap has
ceil(n / 8) bytes. Run ``python tests/vectors/generate_secagg_members.py``;
re-running it must leave ``git diff`` empty.
"""

from __future__ import annotations

import json
from pathlib import Path


def bitmap(cohort: list[str], members: list[str]) -> bytes:
    out = bytearray((len(cohort) + 7) // 8)
    for i, site in enumerate(cohort):
        if site in members:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def main() -> None:
    cases = []
    for n, members in (
        (3, [0, 1, 2]),
        (8, [0, 2, 4, 6]),
        (9, [8]),
        (13, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
        (20, [1, 3, 5, 7, 11, 13, 17, 19]),
        (65, [i for i in range(65) if i % 10]),
    ):
        cohort = [f"site-{i:02d}" for i in range(n)]
        chosen = [cohort[i] for i in members]
        cases.append({"cohort": cohort, "members": chosen, "bitmap": bitmap(cohort, chosen).hex()})
    must_fail = [
        {"cohort": [f"site-{i:02d}" for i in range(9)], "bitmap": "ff", "why": "one byte short"},
        {"cohort": [f"site-{i:02d}" for i in range(9)], "bitmap": "ff0100", "why": "a byte long"},
        {"cohort": [f"site-{i:02d}" for i in range(9)], "bitmap": "ff03", "why": "bit 9 of 9"},
        {"cohort": [f"site-{i:02d}" for i in range(3)], "bitmap": "0f", "why": "bit 3 of 3"},
    ]
    out = {"bitmaps": cases, "must_fail": must_fail}
    path = Path(__file__).with_name("secagg_members.json")
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
