"""A site that replays an earlier round as the next link of its own chain fails the audit.

The site holds its key, so it can relink and re-sign anything (claims
recomputed, every signature and link valid): only the order of round ids
along the chain shows that round 0 came back after round 2.
"""

from __future__ import annotations

import copy

from reports_fixtures import Federation

from securefl.reports import audit


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
