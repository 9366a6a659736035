"""The server's last step: rebuild secrets from shares, remove masks, check the sum.

Kept apart from the stage machine in ``_server.py`` because it is the one
place where shares turn into secrets: every rebuilt secret is checked against
what its owner signed before it is used, and the unmasked sum is checked
against what honest inputs can add up to before anyone sees it.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import numpy.typing as npt

from securefl.aggregation.base import RoundContext
from securefl.errors import AbortError, IntegrityError
from securefl.hazmat import prg, shamir
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.quantize import QuantizationParams
from securefl.secagg._config import MaskPlan
from securefl.secagg._keys import mask_sign, pair_seed

__all__ = ["check_feasible", "reconstruct", "remove_masks"]

log = logging.getLogger(__name__)
_MAX_RETRIES = 64  # t-subsets tried per secret before giving up on bad shares

Responses = Mapping[str, Mapping[str, Mapping[str, bytes]]]
"""holder -> {"b" | "s" -> {owner -> share}}: the unmask responses received."""


def reconstruct(
    plan: MaskPlan,
    responses: Responses,
    kind: str,
    owners: list[str],
    check: Callable[[str, bytes], bool],
) -> dict[str, bytes]:
    """Recover each owner's secret of ``kind`` from t shares; first try one shared t-set.

    Raises :class:`AbortError` when an owner has fewer than t shares, or no
    t-set of its shares rebuilds the secret ``check`` accepts.
    """
    t = plan.threshold
    available: dict[str, dict[int, bytes]] = {}
    for v in owners:
        available[v] = {
            plan.share_id(h): resp[kind][v] for h, resp in responses.items() if v in resp[kind]
        }
        if len(available[v]) < t:
            raise AbortError(f"only {len(available[v])} shares for {v!r}; need {t}")
    groups: dict[tuple[int, ...], dict[str, dict[int, bytes]]] = {}
    for v, shares in available.items():
        groups.setdefault(tuple(sorted(shares)[:t]), {})[v] = shares
    out: dict[str, bytes] = {}
    for ids, members in groups.items():
        try:  # Lagrange coefficients computed once per t-set, shared by its secrets
            got = shamir.combine_many(members, ids)
        except IntegrityError:
            got = {}
        for v, shares in members.items():
            if v in got and check(v, got[v]):
                out[v] = got[v]
                continue
            out[v] = _retry(t, v, shares, check)
    return out


def _retry(t: int, v: str, shares: dict[int, bytes], check: Callable[[str, bytes], bool]) -> bytes:
    """Rebuild v's secret from every t-set of its shares, or ``_MAX_RETRIES`` random ones.

    Random, not lexicographic: ``itertools.combinations`` keeps the lowest
    share ids for its first C(s - 1, t - 1) sets, so one bad share at a low id
    was in every set tried. When C(s, t) <= ``_MAX_RETRIES`` all sets are
    tried. Otherwise, with f bad shares among s, each draw avoids them
    with probability C(s - f, t) / C(s, t) (one bad share of 20 at t = 14:
    0.3, so all 64 draws fail with probability 0.7**64 < 2**-32). The draw
    order is not secret (only the commitment ``check`` decides), and many bad
    shares can still make every draw fail: the round then aborts, it never
    yields a wrong secret.
    """
    for ids in _t_sets(sorted(shares), t):
        try:
            secret = shamir.combine({x: shares[x] for x in ids}, threshold=t)
        except IntegrityError:
            continue
        if check(v, secret):
            log.warning("a share for %s was corrupted; recovered from another t-set", v)
            return secret
    raise AbortError(f"the shares for {v!r} do not reconstruct its committed secret")


def _t_sets(ids: list[int], t: int) -> Iterator[tuple[int, ...]]:
    """Every t-set when there are at most ``_MAX_RETRIES``, else that many random draws."""
    if math.comb(len(ids), t) <= _MAX_RETRIES:
        yield from itertools.combinations(ids, t)
        return
    rng = random.SystemRandom()
    for _ in range(_MAX_RETRIES):
        yield tuple(sorted(rng.sample(ids, t)))


def remove_masks(
    total: npt.NDArray[np.uint32],
    plan: MaskPlan,
    ctx: RoundContext,
    b_seeds: Mapping[str, bytes],
    s_keys: Mapping[str, bytes],
    s_pks: Mapping[str, bytes],
) -> None:
    """Take the survivors' self masks and the dropped sites' pairwise masks off ``total``.

    ``b_seeds`` holds each survivor's self-mask seed, ``s_keys`` each dropped
    site's masking key, ``s_pks`` each survivor's advertised masking public
    key (all already checked against what their owners signed). A dropped
    site's masks with its neighbours among the survivors are still in their
    inputs; nothing else is. One cache-friendly pass, in place.
    """
    masks = [(seed, -1) for seed in b_seeds.values()]
    for v, sk in s_keys.items():
        kp = KeyPair.from_private_bytes(sk)
        for u in sorted(plan.neighbours(v) & set(s_pks)):
            masks.append((pair_seed(kp, s_pks[u], ctx, v, u), -mask_sign(u, v)))
    prg.add_masks(total, masks, bits=plan.quant.bits)


def check_feasible(
    summed: npt.NDArray[np.float64], quant: QuantizationParams, *, summands: int
) -> None:
    """Refuse an unmasked sum that no ``summands`` honest sites can produce.

    An honest site sends z_0 = (w/max_w)·clip in (0, clip] and z_i = (w/max_w)·
    clip(Δ_i), so |z_i| <= z_0 (floating-point products are monotone). With
    stochastic rounding q = floor(z·scale + u), u in [0, 1): q_0 >= floor(z_0·
    scale) and |q_i| <= floor(z_0·scale) + 2 (the last +1 only when the
    rounded addition lands on the next integer), so |q_i| <= q_0 + 2. Summed
    over the survivors: 0 <= S_0 <= summands·(floor(clip·scale) + 2) (the total
    weight is at most Σ max_w, up to two quanta per site) and
    |S_i| <= S_0 + 2·summands for every coordinate. S_0 = 0 is refused too:
    the mean would be 0/0 (a cheating site can cancel the others' weight, and
    weights far below max_weight can all round to zero). A masked input is any
    ring element, so a cheating site can send more; this catches what falls outside.
    ``summed`` is the dequantized sum (S / scale, exact: scale is a power of two).
    """
    scale = quant.scale
    s0 = float(summed[0]) * scale
    if not 0 < s0 <= summands * (quant.value_bound + 1):
        raise AbortError(
            f"the unmasked total weight is outside (0, {summands} x max_weight]: a site sent "
            "an infeasible input (or every weight rounded to zero); the round is rejected"
        )
    if summed.size > 1:
        body = summed[1:]
        peak = max(-float(np.min(body)), float(np.max(body))) * scale
        if peak > s0 + 2 * summands:
            raise AbortError(
                "the unmasked sum exceeds what clipped updates of the survivors' total weight "
                "can reach: a site sent an infeasible input; the round is rejected"
            )
