"""A site that rewrites its own chain: a replayed round, and gaps after unbroken links.

The site holds its key, so it can relink and re-sign anything (claims
recomputed, every signature and link valid): only the order of round ids
along the chain shows that round 0 came back after round 2.
"""

from __future__ import annotations

import copy
from pathlib import Path

from reports_fixtures import Federation, build

from securefl.reports import audit
from securefl.reports.findings import WARN


def test_an_earlier_round_replayed_as_the_next_link_fails(federation: Federation) -> None:
    recs = federation.lines("beta")
    assert [r["round_id"] for r in recs] == [0, 1, 2]
    federation.rewrite_chain("beta", [*recs, copy.deepcopy(recs[0])])
    report = audit([federation.root])
    assert not report.passed
    # the replayed record itself is named by a failing finding (the link order,
    # round_not_increasing, and the file order, reordered, each see it)
    replayed = [f for f in report.findings if f.fails and f.site == "beta" and f.round_id == 0]
    assert {f.code for f in replayed} & {"round_not_increasing", "reordered"}


def test_the_same_chain_without_the_replay_passes(federation: Federation) -> None:
    federation.rewrite_chain("beta", federation.lines("beta"))
    assert audit([federation.root]).passed


def _skipped(fed: Federation) -> list[tuple[str | None, int | None, str]]:
    return [
        (f.site, f.round_id, f.severity)
        for f in audit([fed.root]).findings
        if f.code == "round_skipped"
    ]


def test_every_gap_along_a_chain_is_reported_not_only_a_first_one(tmp_path: Path) -> None:
    """Rounds 0..5; the site re-signs its chain without rounds 2 and 4 (after unbroken links)."""
    fed = build(tmp_path / "fed", {"alpha": 640, "beta": 640}, rounds=6)
    recs = fed.lines("alpha")
    assert [r["round_id"] for r in recs] == [0, 1, 2, 3, 4, 5]
    fed.rewrite_chain("alpha", [recs[0], recs[1], recs[3], recs[5]])
    assert _skipped(fed) == [("alpha", 3, WARN), ("alpha", 5, WARN)]


def test_a_gap_over_rounds_the_log_says_the_site_took_part_in_stays_a_warning(
    tmp_path: Path,
) -> None:
    """Rounds 1 and 2 dropped; the server's log shows the site in both: not explained."""
    fed = build(tmp_path / "fed", {"alpha": 640, "beta": 640}, rounds=4, server_log=True)
    recs = fed.lines("alpha")
    fed.rewrite_chain("alpha", [recs[0], recs[3]])
    assert _skipped(fed) == [("alpha", 3, WARN)]
    assert not audit([fed.root]).passed
