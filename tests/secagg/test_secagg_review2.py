"""Second review of the hardened mask mode: claims that the code does not keep.

Each test asserts the protection as documented (``threat_models/mask.md``,
``MaskPlan.colluders_tolerated``, ``securefl plan``) and fails while the
gap is open. The attacks are played with the project's own halves: an
honest :class:`~securefl.secagg.MaskServer` and real site halves, with
colluding sites that know their own inputs.
"""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from secagg_driver import (
    Federation,
    edit_payload,
    quick_round,
    random_updates,
    round_digest,
    run_round,
)

from securefl.aggregation.base import RoundContext
from securefl.config import FederationConfig, SiteSpec
from securefl.errors import ConfigError
from securefl.hazmat import shamir
from securefl.hazmat.sign import SigningKey
from securefl.reports.plan import threat_summary
from securefl.secagg import MaskConfig, MaskSiteMode
from securefl.secagg import _messages as m

MAX_W = 100.0
D = 6


@pytest.mark.parametrize(("roster", "cohort"), [(3, 3), (7, 4)])
def test_colluders_tolerated_never_leaves_a_single_honest_site(
    tmp_path: Path, roster: int, cohort: int
) -> None:
    """``MaskPlan.colluders_tolerated`` is 2t - n - 1 on the complete graph, even when t = n.

    At t = n (3 sites; or a federation of 7 whose server opens a cohort of
    c + 2 = 4) it claims n - 1 colluders are withstood. With n - 1 colluders
    the one honest site's update is the sum minus the colluders' own inputs:
    an honest round, no cheating at all, reveals it. The tolerance of a
    cohort must be at most n - 2 (``federation_tolerance`` already takes that
    minimum; the plan's property and the "round of all N" figures do not).
    """
    fed = Federation(tmp_path, roster, MaskConfig(clip=1.0))
    ctx = dataclasses.replace(fed.ctx(1, D, MAX_W), cohort=fed.names[:cohort])
    plan = fed.site_mode(ctx.cohort[0]).site(ctx, ctx.cohort[0])._plan  # type: ignore[attr-defined]
    claimed = plan.colluders_tolerated
    victim, colluders = ctx.cohort[0], list(ctx.cohort[1 : 1 + claimed])
    updates = random_updates(fed.names, D)
    weights = dict.fromkeys(fed.names, MAX_W)
    run = run_round(fed, ctx, updates, weights)
    assert run.result is not None and run.result.weighted_sum is not None
    theirs = sum(MAX_W * np.clip(updates[c].astype(np.float64), -1.0, 1.0) for c in colluders)
    learned = (run.result.weighted_sum - theirs) / MAX_W
    truth = np.clip(updates[victim].astype(np.float64), -1.0, 1.0)
    honest_left = cohort - len(colluders)
    assert honest_left >= 2 and not np.allclose(learned, truth, atol=1e-3), (
        f"plan.colluders_tolerated = {claimed} at n = {cohort} (N = {roster}); that many "
        f"colluders read {victim}'s update {learned} (true {truth}) from an honest round"
    )


def _big_roster(n: int) -> tuple[dict[str, SigningKey], dict[str, bytes]]:
    keys = {f"site-{i:03d}": SigningKey.generate() for i in range(n)}
    return keys, {s: k.public_bytes() for s, k in keys.items()}


def test_a_large_federation_refuses_cohorts_below_c_plus_two(tmp_path: Path) -> None:
    """threat_models/mask.md: "A cohort of fewer than max(min_cohort, c + 2) sites is refused
    by every site"; ``securefl plan`` says each site "refuses cohorts of fewer than
    {smallest} sites".

    A federation of 300 sites: c = 99, so a site should refuse any cohort
    below 101. Above ``complete_graph_max`` the k-regular plan never looks
    at c or the roster, so a server opens a cohort of 80 (k = 78, t = 53)
    and every site accepts it.
    """
    config = MaskConfig(clip=1.0)
    keys, roster = _big_roster(300)
    smallest = config.smallest_cohort(len(roster))
    assert smallest == 101
    cohort = tuple(sorted(roster))[:80]
    ctx = RoundContext(
        federation="fed",
        round=1,
        cohort=cohort,
        dimension=D,
        max_weight=MAX_W,
        round_digest=round_digest(1, D, MAX_W),
    )
    me = cohort[0]
    mode = MaskSiteMode(
        site_id=me,
        signing_key=keys[me],
        roster=roster,
        state_path=tmp_path / "state.json",
        config=config,
    )
    with pytest.raises(ConfigError):
        half = mode.site(ctx, me)
        plan = half._plan  # type: ignore[attr-defined]
        pytest.fail(
            f"a site of a {len(roster)}-site federation accepted a cohort of {len(cohort)} "
            f"(< c + 2 = {smallest}) at t = {plan.threshold}, k = {plan.k}"
        )


def test_plan_text_states_the_threshold_rule_the_sites_run() -> None:
    """``securefl plan`` for 100 sites says each site "sets t with 2t > cohort + c".

    c = 33, and a round of all 100 sites runs the k-regular graph at t = 53:
    2t = 106 < 133. The sentence promises the complete-graph rule for a
    federation whose rounds (of 80 or more sites) do not follow it.
    """
    n = 100
    summary = threat_summary(
        FederationConfig(secure="mask", sites=tuple(SiteSpec(name=f"s{i}") for i in range(n)))
    )
    config = MaskConfig(clip=1.0)
    c = config.assumed_colluders(n)
    plan = config.plan(
        federation="f",
        round_id=1,
        cohort=tuple(f"s{i:03d}" for i in range(n)),
        federation_size=n,
    )
    if "2t > cohort + c" in summary.collusion:
        assert 2 * plan.threshold > n + c, (
            f"plan says t follows 2t > cohort + c (c = {c}), but a round of all {n} runs at "
            f"t = {plan.threshold} (k = {plan.k}): {summary.collusion}"
        )


def test_one_corrupted_share_is_routed_around_in_a_cohort_of_twenty(tmp_path: Path) -> None:
    """threat_models/mask.md: corrupted unmask shares "are caught ... and routed around".

    20 sites (t = 14, 20 b-shares of every survivor): one cheating site,
    site-00, holds Shamir x = 1 and adds a random offset to every b-share it
    releases. 19 honest shares remain for each secret, five more than t. The
    server's first t-set contains x = 1 and fails the commitment; its retry
    walks ``itertools.combinations`` in lexicographic order and gives up
    after 64 t-sets, every one of which still contains x = 1 (there are
    C(19, 13) = 27,132 of those), so one cheating site aborts every round
    from a cohort of 20 up. Shown at n = 6 only (5 shares, t = 4: 4 t-sets).
    """
    fed = Federation(tmp_path, 20, MaskConfig(clip=1.0))

    def edit(body: dict[str, Any]) -> None:
        for v, share in body["b"].items():
            y = int.from_bytes(share, "big")
            offset = 1 + secrets.randbelow(shamir.PRIME - 1)
            body["b"][v] = ((y + offset) % shamir.PRIME).to_bytes(shamir.SHARE_LEN, "big")

    run = quick_round(fed, edit_payload(m.UNMASK, edit, sender="site-00"), dimension=4)
    assert run.server._plan.threshold == 14
    assert run.result is not None, (
        f"one corrupted share among 20 aborted the round: {run.server_abort}"
    )
