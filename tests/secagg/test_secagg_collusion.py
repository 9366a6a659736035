"""A cheating server with a colluding site: split views, split round starts, split rings.

Each test plays the attacker with the project's own halves: real
:class:`~securefl.secagg.MaskSite` objects, driven by a hand-played server
(:mod:`secagg_adversary`) that tells each site what it likes, and a colluding
site that signs whatever the server asks and hands over the shares it holds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from secagg_adversary import CheatingServer
from secagg_driver import Federation, random_updates, round_digest, run_round

from securefl.errors import ConfigError
from securefl.secagg import MaskConfig
from securefl.secagg import _messages as m

D = 8
MAX_W = 100.0


def split_view(fed: Federation) -> tuple[CheatingServer, dict[str, np.ndarray]]:
    """The split-view attack with the last site colluding.

    Honest sites are cut into two halves A and B. A is told "A and the
    colluder survived, B dropped", B the reverse; the colluder signs both
    lists. Holders in A then release the self-mask shares of A and the
    masking-key shares of B, holders in B the reverse, and the colluder
    hands over both shares of everyone.
    """
    ctx = fed.ctx(1, D, MAX_W)
    srv = CheatingServer(fed, ctx, fed.sites(ctx))
    updates = random_updates(fed.names, D)
    srv.advertise(updates, MAX_W)  # weight = max_weight: the input is clip(Δ) itself
    everyone = list(fed.names)
    srv.share(dict.fromkeys(everyone, everyone))
    srv.mask(dict.fromkeys(everyone, everyone))
    colluder, honest = everyone[-1], everyone[:-1]
    srv.steal_from(colluder)
    half = (len(honest) + 1) // 2
    sides = (honest[:half], honest[half:])
    lists = [sorted([*side, colluder]) for side in sides]
    srv.sign({s: lists[i] for i, side in enumerate(sides) for s in side})
    requests = {}
    for i, side in enumerate(sides):
        sigs = {s: srv.sigs[s] for s in side if s in srv.sigs}
        sigs[colluder] = fed.keys[colluder].sign(
            m.consistency_message("fed", 1, tuple(lists[i]), run="")
        )
        for s in side:
            requests[s] = (lists[i], sorted(sides[1 - i]), sigs)
    srv.unmask(requests)
    return srv, updates


@pytest.mark.parametrize("n", [3, 5, 7])
def test_split_view_with_one_colluder_reveals_no_update(tmp_path: Path, n: int) -> None:
    fed = Federation(tmp_path, n, MaskConfig(clip=1.0))
    srv, _ = split_view(fed)
    honest = fed.names[:-1]
    exposed = [v for v in honest if srv.both_secrets(v)]
    assert exposed == [], f"the server rebuilt both secrets of {exposed}"
    # The honest sites saw too few survivors or signatures for their own t, and said so.
    assert set(srv.aborted) == set(honest)
    assert srv.released == {}


def test_split_view_reads_an_update_when_no_colluder_is_tolerated(tmp_path: Path) -> None:
    """``corrupt = 0`` at n = 5 gives t = 3: what the default policy prevents, shown working."""
    fed = Federation(tmp_path, 5, MaskConfig(clip=1.0, corrupt=0))
    srv, updates = split_view(fed)
    victim = fed.names[0]
    assert not srv.aborted and srv.both_secrets(victim)
    z = srv.read_update(victim, [s for s in fed.names if s != victim])
    scale = srv.plan.quant.scale
    assert abs(z[0] - 1.0) <= 2 / scale  # the weight coordinate: w / max_w · clip
    assert np.max(np.abs(z[1:] - np.clip(updates[victim], -1.0, 1.0))) <= 2 / scale


@pytest.mark.parametrize(
    "change",
    [
        {"round_digest": round_digest(1, D, MAX_W, model=b"a model whose update vanishes")},
        {"max_weight": 1.0, "round_digest": round_digest(1, D, 1.0)},
    ],
    ids=["other-model", "other-settings"],
)
def test_a_site_given_another_round_start_makes_every_site_abort(
    tmp_path: Path, change: dict[str, object]
) -> None:
    """The server gives one site another model or settings (Pasquini et al., CCS 2022).

    It forwards every advert as it came (it does not compare digests, as the
    honest server, which knows the round start it sent, does).
    """
    fed = Federation(tmp_path, 5, MaskConfig(clip=1.0))
    ctx = fed.ctx(1, D, MAX_W)
    odd = dataclasses.replace(ctx, **change)  # type: ignore[arg-type]
    updates = random_updates(fed.names, D)
    contexts = {**dict.fromkeys(fed.names, ctx), "site-02": odd}
    blind = dataclasses.replace(ctx, round_digest=b"")  # the server's own: no digest to compare
    run = run_round(fed, blind, updates, dict.fromkeys(fed.names, 1.0), contexts=contexts)
    assert set(run.aborted) == set(fed.names), "a site went on with a split round start"
    assert all(m.SHARE not in sent for sent in run.sent_by.values()), "shares left a site"
    assert run.result is None


def test_a_masked_round_needs_the_round_start_digest(tmp_path: Path) -> None:
    fed = Federation(tmp_path, 3, MaskConfig(clip=1.0))
    ctx = dataclasses.replace(fed.ctx(1, D), round_digest=b"")
    with pytest.raises(ConfigError, match="digest"):
        fed.site_mode("site-00").site(ctx, "site-00")


def test_claimed_dropouts_cannot_split_the_regular_ring(tmp_path: Path) -> None:
    """n = 70 on the k-regular graph: the server claims two runs of k/2 sites dropped.

    Before the masked inputs it "loses" the shares of two runs of k/2
    consecutive sites in the public order, which cuts the ring into two arcs
    whose masks cancel within each arc. Each arc's sum would follow from the
    self-mask shares; the sites see more missing than the graph allows and
    abort before sending a masked input.
    """
    cfg = MaskConfig(clip=1.0, corrupt_rate=0.0, dropout_rate=0.05)
    fed = Federation(tmp_path, 70, cfg)
    ctx = fed.ctx(1, 4, MAX_W)
    srv = CheatingServer(fed, ctx, fed.sites(ctx))
    plan = srv.plan
    assert not plan.complete and plan.missing_allowed == 3 < plan.k
    half, order = plan.k // 2, list(plan.order)
    arcs = (order[half:35], order[35 + half :])
    updates = random_updates(fed.names, 4)
    srv.advertise(updates, MAX_W)
    everyone = list(fed.names)
    srv.share(dict.fromkeys(everyone, everyone))
    u2 = sorted([*arcs[0], *arcs[1]])
    srv.mask(dict.fromkeys(u2, u2))
    u3 = sorted(srv.inputs)
    srv.sign(dict.fromkeys(u3, u3))
    sigs = {s: srv.sigs[s] for s in u3 if s in srv.sigs}
    srv.unmask({s: (u3, [], sigs) for s in u3})
    for arc in arcs:
        learned = srv.partial_sum(arc)
        want = sum(np.clip(updates[v].astype(np.float64), -1.0, 1.0) for v in arc)
        assert learned is None, f"the sum of {len(arc)} sites was learned: {learned} ~ {want}"
    assert srv.inputs == {} and set(srv.aborted) == set(u2)
