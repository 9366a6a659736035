"""A site against a cheating server: cases the mutation run of ``secagg/_site.py`` asked for.

Each test plays the server and hands one honest site something an honest
server never sends; the site must abort (wiping its secrets) and release
nothing. See ``docs/mutation.md`` ("secagg/ modules").
"""

from __future__ import annotations

from pathlib import Path

from secagg_adversary import CheatingServer
from secagg_driver import Federation, random_updates

from securefl.secagg import MaskConfig

D = 8
MAX_W = 100.0
LOCAL = MaskConfig(
    clip=1.0, complete_graph_max=3, dropout_rate=0.05, corrupt_rate=0.0, neighbourhood=True
)
"""n = 30 on the neighbourhood round: k = 18, t = 10, m = 1, ℓ = 1."""


def test_a_neighbour_without_an_advert_cannot_be_listed_as_a_share_sender(
    tmp_path: Path,
) -> None:
    """The server withholds one neighbour's advert (within ℓ), then lists it as a share sender.

    The site never learnt that neighbour's keys, so it cannot open its share
    or mask against it; it must refuse the list (and wipe its secrets), not
    fail on a missing key or mask with a partial set.
    """
    fed = Federation(tmp_path, 30, LOCAL)
    ctx = fed.ctx(1, D, MAX_W)
    plan = LOCAL.plan(federation=fed.federation, round_id=1, cohort=fed.names)
    assert plan.local and plan.local_missing == 1
    sites = fed.sites(ctx)
    srv = CheatingServer(fed, ctx, sites)
    target = plan.order[0]
    hidden = sorted(plan.neighbours(target))[0]
    srv.advertise(random_updates(fed.names, D), MAX_W)
    shown = {s: sorted(plan.holders(s)) for s in fed.names}
    shown[target] = [s for s in shown[target] if s != hidden]
    srv.share(shown)
    assert target in srv.shares and target in srv.shares[hidden]  # hidden did share with it
    senders = {s: sorted(plan.holders(s) & set(srv.shares)) for s in fed.names}
    assert hidden in senders[target]
    srv.mask(senders)
    assert target in srv.aborted and target not in srv.inputs
    half = sites[target]
    assert half._c is None and half._s is None and half._b == b"" and half._held == {}
    srv.sign({s: list(fed.names) for s in fed.names if s != target})
    assert target not in srv.sigs


def test_fake_ids_cannot_pad_a_survivor_list_past_the_missing_cap(tmp_path: Path) -> None:
    """The neighbourhood round's survivor list, sent as ids instead of a bitmap.

    The server drops two far sites (m = 1 allows one) and pads the list with
    two ids that are not in the cohort, so it still names n sites. Counting
    them would hide the second missing site (the cap is what keeps a server
    from cutting the ring into arcs whose sums it learns); the site refuses
    to sign.
    """
    fed = Federation(tmp_path, 30, LOCAL)
    ctx = fed.ctx(1, D, MAX_W)
    plan = LOCAL.plan(federation=fed.federation, round_id=1, cohort=fed.names)
    assert plan.missing_allowed == 1
    srv = CheatingServer(fed, ctx, fed.sites(ctx))
    srv.advertise(random_updates(fed.names, D), MAX_W)
    srv.share({s: sorted(plan.holders(s)) for s in fed.names})
    srv.mask({s: sorted(plan.holders(s) & set(srv.shares)) for s in fed.names})
    assert set(srv.inputs) == set(fed.names)
    target = plan.order[0]
    far = [s for s in plan.order if s not in plan.holders(target)][:2]
    padded = sorted((set(fed.names) - set(far)) | {"zz-fake-1", "zz-fake-2"})
    assert len(padded) == fed.n
    srv.sign({target: padded})
    assert target in srv.aborted and target not in srv.sigs
    honest = sorted(set(fed.names) - set(far[:1]))  # one missing: within the cap
    other = plan.order[len(plan.order) // 2]
    srv.sign({other: honest})
    assert other in srv.sigs
