"""Attacks on the hardened mask mode that still get through (each test asserts the protection).

Each test plays a cheating server (and, where named, colluding sites) with
the project's own halves: real :class:`~securefl.secagg.MaskSite` objects
driven by :class:`secagg_adversary.CheatingServer`, which tells each site
what it likes. A test fails while the attack works.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from secagg_adversary import CheatingServer
from secagg_driver import Federation, edit_payload, random_updates, run_round, wide_federation

from securefl.aggregation.base import AggregateResult
from securefl.errors import AbortError, ConfigError, ProtocolError
from securefl.hazmat import aead, prg, shamir
from securefl.hazmat.quantize import dequantize_sum
from securefl.runtime.global_model import PlainGlobalModel
from securefl.secagg import MaskConfig
from securefl.secagg import _messages as m
from securefl.secagg._keys import mask_sign, pair_seed, share_key
from securefl.strategy import FedAvg

MAX_W = 100.0


big_federation = wide_federation


def _arc_sum_with_colluders(
    srv: CheatingServer, arc: list[str], colluders: list[str], masking_keys: dict[str, Any]
) -> npt.NDArray[np.float64] | None:
    """Σ of the arc's inputs with every mask removed, or None when the attack fell short.

    The colluders open the share ciphertexts the arc sites sent them (their
    b-shares complete the t the arc's own holders released) and hand over
    their masking keys, which remove the arc's pairwise masks with them.
    """
    ctx, plan, t = srv.ctx, srv.plan, srv.plan.threshold
    if any(a not in srv.inputs for a in arc) or any(masking_keys[c] is None for c in colluders):
        return None
    stolen: dict[str, dict[int, bytes]] = {a: {} for a in arc}
    for c in colluders:
        c_key = srv.sites[c]._c
        if c_key is None:
            return None
        for a in arc:
            if c in srv.shares.get(a, {}):
                key = share_key(c_key, srv.adverts[a]["c_pk"], ctx, a, c)
                ad = aead.share_ad(ctx.federation, ctx.round, a, c, m.SHARE)
                plain = aead.open_(key, srv.shares[a][c], associated_data=ad)
                stolen[a][plan.share_id(c)] = plain[66:]
    total = np.zeros(ctx.dimension + 1, dtype=np.uint32)
    masks = []
    for a in arc:
        shares = dict(stolen[a])
        for h, resp in srv.released.items():
            if a in resp["b"]:
                shares[plan.share_id(h)] = resp["b"][a]
        if len(shares) < t:
            return None
        masks.append((shamir.combine(dict(list(shares.items())[:t]), threshold=t), -1))
        np.add(total, srv.inputs[a], out=total)
        for c in sorted(plan.neighbours(a) & set(colluders)):
            seed = pair_seed(masking_keys[c], srv.adverts[a]["s_pk"], ctx, c, a)
            masks.append((seed, -mask_sign(a, c)))
    prg.add_masks(total, masks, bits=plan.quant.bits)
    try:
        return dequantize_sum(total, plan.quant, summands=len(arc))
    except ProtocolError:
        return None


def test_per_site_views_cannot_split_the_regular_ring_within_the_dropout_cap(
    tmp_path: Path,
) -> None:
    """n = 200, corrupt_rate = 0, dropout_rate = 0.05: k = 20, t = 11, m = 10; no colluder.

    Different parts of the ring are shown different lists. Take an arc of 22
    consecutive sites between two runs R1, R2 of k/2 = 10 sites in the public
    order. The left half of the arc is told "R1 missing", the right half "R2
    missing": every list misses 10 <= m sites, every arc site keeps
    k/2 + 1 = t live holders and t signatures from its holders over its own
    list, and no arc site masks with a site outside the arc. Without a
    cohort-wide check the arc's masks cancel among themselves, its self masks
    are released, and the server reads the sum of 22 of the 200 inputs.

    The server does its best for the signatures: every other site is shown
    one of the two lists (R1 the second, everyone else the first) and each
    arc site is handed every signature over its own list. A list needs
    n - m = 190 signatures from the cohort, and two lists can only both have
    them if n - 2m = 180 sites sign both.
    """
    cfg = MaskConfig(clip=1.0, corrupt_rate=0.0, dropout_rate=0.05)
    fed = big_federation(tmp_path, 200, cfg)
    ctx = fed.ctx(1, 4, MAX_W)
    srv = CheatingServer(fed, ctx, fed.sites(ctx))
    plan = srv.plan
    half = plan.k // 2
    assert not plan.complete and plan.quorum == 200 - plan.missing_allowed
    order = list(plan.order)
    r1, arc, r2 = order[:half], order[half : 3 * half + 2], order[3 * half + 2 : 4 * half + 2]
    right = arc[half + 1 :]  # the left half, arc[: half + 1], keeps the first list
    everyone = list(fed.names)
    first, second = sorted(set(everyone) - set(r1)), sorted(set(everyone) - set(r2))
    updates = random_updates(fed.names, 4)
    srv.advertise(updates, MAX_W)
    srv.share(dict.fromkeys(everyone, everyone))  # the real adverts, one round start for all
    lists = {s: first for s in everyone}
    lists.update(dict.fromkeys([*right, *r1], second))
    srv.mask(lists)
    srv.sign(lists)
    requests: dict[str, tuple[list[str], list[str], dict[str, bytes]]] = {}
    for s in arc:
        sigs = {u: sig for u, sig in srv.sigs.items() if lists[u] == lists[s]}
        requests[s] = (lists[s], [], sigs)
    srv.unmask(requests)
    learned = srv.partial_sum(arc)
    want = sum(np.clip(updates[v].astype(np.float64), -1.0, 1.0) for v in arc)
    assert learned is None, (
        f"the sum of {len(arc)} of {len(everyone)} sites was learned: "
        f"{learned[1:]} ~ {want} (weights {learned[0]:.2f})"
    )
    assert set(arc) <= set(srv.aborted) and not srv.released  # no share left an arc site


def _ring_cut(
    tmp: Path, colluding: int, dropped: int
) -> tuple[CheatingServer, list[str], list[str], list[str], dict[str, Any]]:
    """n = 280, default settings (k = 80, t = 54, m = 28): cut two runs of k/2 around an arc.

    ``colluding`` sites of the two runs collude and ``dropped`` are claimed
    dropped before the share stage (half in each run, at the run ends away
    from the arc); one list is shown to every listed site, all of which
    sign it. Returns the server, the arc, the colluders, the list, updates.
    """
    fed = big_federation(tmp, 280, MaskConfig(clip=1.0))
    ctx = fed.ctx(1, 4, MAX_W)
    srv = CheatingServer(fed, ctx, fed.sites(ctx))
    plan = srv.plan
    half = plan.k // 2
    assert not plan.complete
    order = list(plan.order)
    runs = (order[:half], order[3 * half : 4 * half])
    arc = order[half : 3 * half]
    cut0 = (dropped + 1) // 2
    gone = [*runs[0][:cut0], *runs[1][half - (dropped - cut0) :]]
    in_runs = [s for s in (*runs[0], *runs[1]) if s not in gone]
    colluders = in_runs[:colluding]
    everyone = list(fed.names)
    listed = sorted(set(everyone) - set(gone))
    updates = random_updates(fed.names, 4)
    srv.advertise(updates, MAX_W)
    srv.share(dict.fromkeys(listed, listed))
    if not srv.shares:  # every site refused the list
        return srv, arc, colluders, listed, {"updates": updates, "keys": {}}
    masking_keys = {c: srv.sites[c]._s for c in colluders}  # the colluders' memory
    srv.mask(dict.fromkeys(listed, listed))
    srv.sign(dict.fromkeys(listed, listed))
    srv.unmask(dict.fromkeys(arc, (listed, [], dict(srv.sigs))))
    return srv, arc, colluders, listed, {"updates": updates, "keys": masking_keys}


def test_colluders_within_the_whole_cohort_cap_cannot_split_the_regular_ring(
    tmp_path: Path,
) -> None:
    """Default settings at n = 280: k - m - 1 = 51 colluders in the two runs cannot cut an arc off.

    The graph is k-connected, so cutting an arc off by sites takes k = 80
    sites in two runs of k/2, of which at most m = 28 may be missing: with
    51 colluders the server must claim a 29th site dropped, and every site
    refuses a list missing more than m. (The 2**-40 bound of
    ``regular_parameters`` speaks of a random placement; this holds for any
    placement the server grinds for.) Cutting edges instead, by telling one
    site that ℓ neighbours did not share, is refused by the masked-with
    claims (tests/secagg/test_secagg_isolation.py).
    """
    plan = MaskConfig(clip=1.0).plan(
        federation="fed", round_id=1, cohort=tuple(f"site-{i:03d}" for i in range(280))
    )
    tolerated, m = plan.colluders_tolerated, plan.missing_allowed
    assert tolerated == plan.k - m - 1 == 51
    srv, arc, colluders, _, extra = _ring_cut(tmp_path, tolerated, plan.k - tolerated)
    assert len(colluders) == tolerated
    learned = _arc_sum_with_colluders(srv, arc, colluders, extra["keys"])
    updates = extra["updates"]
    want = sum(np.clip(updates[v].astype(np.float64), -1.0, 1.0) for v in arc)
    assert learned is None or not np.allclose(learned[1:], want, atol=1e-2), (
        f"the sum of the {len(arc)} arc sites was learned with {tolerated} colluders"
    )
    assert not srv.released and set(srv.aborted) >= set(arc)


def test_k_minus_m_colluders_split_the_regular_ring(tmp_path: Path) -> None:
    """The limit, shown working: k - m = 52 colluders and m = 28 dropped read an 80-site arc sum.

    No site has more than 26 colluders among its 81 holders, every site sees
    the same list, and every listed site signs it: what ``plan`` states as
    the tolerance (51 colluders in the cohort) is what holds, not a count per
    site's holders.
    """
    plan = MaskConfig(clip=1.0).plan(
        federation="fed", round_id=1, cohort=tuple(f"site-{i:03d}" for i in range(280))
    )
    m = plan.missing_allowed
    srv, arc, colluders, _, extra = _ring_cut(tmp_path, plan.k - m, m)
    assert len(colluders) == plan.colluders_tolerated + 1
    per_site = max(len(plan.holders(s) & set(colluders)) for s in plan.cohort)
    assert per_site <= 2 * plan.threshold - plan.k - 2  # 26: the old per-holder restatement
    assert not srv.aborted
    learned = _arc_sum_with_colluders(srv, arc, colluders, extra["keys"])
    updates = extra["updates"]
    want = sum(np.clip(updates[v].astype(np.float64), -1.0, 1.0) for v in arc)
    assert learned is not None and np.allclose(learned[1:], want, atol=1e-2)


def test_an_aggregate_with_zero_total_weight_is_rejected(tmp_path: Path) -> None:
    """One cheating site cancels the total weight: the feasibility check lets S0 = 0 through.

    Five sites at full weight whose updates are zero on every coordinate (a
    frozen model, or a site that took no step): S_i = 0, and site-02 subtracts
    the five weight quanta from its masked weight coordinate. 0 <= S0 and
    |S_i| <= S0 + 2m both hold, the round completes with total weight 0, and
    its mean, the update every strategy applies, is 0/0.
    """
    fed = Federation(tmp_path, 5, MaskConfig(clip=1.0, bits=20))
    quant = fed.config.quantization(5)
    q0 = round(1.0 * quant.scale)  # weight = max_weight: z0 = clip, exactly representable

    def edit(body: dict[str, Any]) -> None:
        y = m.unpack_ring(body["y"], body["n"], body["bits"]).astype(np.int64)
        y[0] = (y[0] - 5 * q0) % (1 << body["bits"])
        body["y"] = m.pack_ring(y.astype(np.uint32), body["bits"])

    zeros = {s: np.zeros(4, dtype=np.float32) for s in fed.names}
    run = run_round(
        fed,
        fed.ctx(1, 4, MAX_W),
        zeros,
        dict.fromkeys(fed.names, MAX_W),
        tamper=edit_payload(m.MASKED_INPUT, edit, sender="site-02"),
    )
    if run.result is not None:
        with np.errstate(all="ignore"):
            mean = run.result.mean()
        assert run.result.total_weight > 0 and np.all(np.isfinite(mean)), (
            f"accepted an aggregate of total weight {run.result.total_weight}: mean {mean}"
        )


def test_a_smaller_cohort_does_not_lower_the_collusion_tolerance_below_the_federations(
    tmp_path: Path,
) -> None:
    """A federation of 7: ``plan`` and the docs promise 2 colluders are tolerated.

    The cheating server, not the site, picks the cohort. It opens a round
    for 6 of the 7 sites, two of them colluding, and mounts the split view
    of ``test_secagg_collusion.py`` (two honest sites on each side, both
    colluders signing both lists). Were t derived from the cohort alone
    (n = 6, c = 1, t = 4) this rebuilds both secrets of all four honest
    sites; each site takes c = 2 from its roster of 7, so t = 5 at n = 6.
    """
    cfg = MaskConfig(clip=1.0)
    fed = Federation(tmp_path, 7, cfg)
    assert cfg.federation_tolerance(7) == 2  # what plan prints for this federation
    cohort = fed.names[:6]
    ctx = dataclasses.replace(fed.ctx(1, 4, MAX_W), cohort=cohort)
    try:
        sites = fed.sites(ctx)
    except (ConfigError, AbortError):
        return  # the sites refuse a cohort that lowers the federation's tolerance
    srv = CheatingServer(fed, ctx, sites)
    assert srv.plan == sites[cohort[0]]._plan and srv.plan.threshold == 5  # the sites' t
    updates = random_updates(fed.names, 4)
    srv.advertise({s: updates[s] for s in cohort}, MAX_W)
    everyone = list(cohort)
    srv.share(dict.fromkeys(everyone, everyone))
    srv.mask(dict.fromkeys(everyone, everyone))
    colluders, honest = everyone[4:], everyone[:4]
    held = {c: dict(srv.sites[c]._held) for c in colluders}  # the colluders' memory
    sides = (honest[:2], honest[2:])
    lists = [sorted([*side, *colluders]) for side in sides]
    srv.sign({s: lists[i] for i, side in enumerate(sides) for s in side})
    requests = {}
    for i, side in enumerate(sides):
        sigs = {s: srv.sigs[s] for s in side if s in srv.sigs}
        for c in colluders:
            sigs[c] = fed.keys[c].sign(m.consistency_message("fed", 1, tuple(lists[i]), run=""))
        for s in side:
            requests[s] = (lists[i], sorted(sides[1 - i]), sigs)
    srv.unmask(requests)
    for c in colluders:  # the colluders hand over both shares of every honest site
        srv.released[c] = {
            "b": {v: pair[1] for v, pair in held[c].items() if v in honest},
            "s": {v: pair[0] for v, pair in held[c].items() if v in honest},
        }
    exposed = [v for v in honest if srv.both_secrets(v)]
    read = {v: srv.read_update(v, [s for s in everyone if s != v])[1:] for v in exposed}
    assert exposed == [], f"the server read the updates of {exposed} one by one: {read}"


def test_a_cohort_of_one_victim_and_the_colluders_is_refused(tmp_path: Path) -> None:
    """A federation of 7 (2 colluders assumed): a cohort of 3 would be the victim plus both.

    Its sum minus the colluders' updates is the victim's update, whatever
    the threshold. Every site, and the honest server, refuses cohorts below
    c + 2 = 4 sites; a cohort of 4 opens and completes.
    """
    fed = Federation(tmp_path, 7, MaskConfig(clip=1.0))
    small = dataclasses.replace(fed.ctx(1, 4, MAX_W), cohort=fed.names[:3])
    for s in small.cohort:
        with pytest.raises(ConfigError, match="at least 4 sites"):
            fed.site_mode(s).site(small, s)
    with pytest.raises(ConfigError, match="at least 4 sites"):
        fed.server(small)
    four = dataclasses.replace(fed.ctx(2, 4, MAX_W), cohort=fed.names[:4])
    updates = random_updates(fed.names, 4)
    run = run_round(fed, four, updates, dict.fromkeys(fed.names, MAX_W))
    assert run.result is not None and run.result.survivors == fed.names[:4]
    assert run.server._plan.threshold == 4  # 2t > 4 + 2


def test_an_honest_smaller_cohort_runs_at_the_federations_threshold(tmp_path: Path) -> None:
    """6 of 7 sites at t = 5 (c = 2 from the roster): one dropout is still recovered."""
    fed = Federation(tmp_path, 7, MaskConfig(clip=1.0))
    ctx = dataclasses.replace(fed.ctx(1, 4, MAX_W), cohort=fed.names[:6])
    updates = random_updates(fed.names, 4)
    weights = dict.fromkeys(fed.names, MAX_W)
    run = run_round(fed, ctx, updates, weights, drop={fed.names[2]: m.MASKED_INPUT})
    assert run.result is not None and not run.aborted
    survivors = tuple(s for s in fed.names[:6] if s != fed.names[2])
    assert run.result.survivors == survivors
    want = sum(np.clip(updates[s].astype(np.float64), -1.0, 1.0) * MAX_W for s in survivors)
    assert np.allclose(run.result.weighted_sum, want, atol=1e-1)


def test_a_zero_or_non_finite_aggregate_never_becomes_the_model() -> None:
    """The last line of defence behind ``check_feasible``: no NaN model is sent to sites."""
    params = np.ones(3, dtype=np.float32)
    model = PlainGlobalModel(params)
    zero = AggregateResult(total_weight=0.0, survivors=("a",), weighted_sum=np.zeros(3))
    inf = AggregateResult(total_weight=1.0, survivors=("a",), weighted_sum=np.full(3, np.inf))
    huge = AggregateResult(total_weight=1e-300, survivors=("a",), weighted_sum=np.full(3, 1e300))
    overflow = AggregateResult(total_weight=1.0, survivors=("a",), weighted_sum=np.full(3, 1e300))
    for bad in (zero, inf, huge, overflow):  # overflow: a finite mean, a float32 model of inf
        with pytest.raises(AbortError):
            model.apply(bad, FedAvg(), 1)
        assert np.array_equal(model.plaintext(), params)
    fine = AggregateResult(total_weight=2.0, survivors=("a",), weighted_sum=np.full(3, 1.0))
    model.apply(fine, FedAvg(), 1)
    assert np.allclose(model.plaintext(), 1.5)
