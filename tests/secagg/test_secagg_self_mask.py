"""The self-mask seed b is fresh per site and per round.

b is what keeps a site's masked input hidden once the server holds its
masking key: a site declared dropped *after* its masked input arrived has its
key shares released by the others, so the pairwise masks come off and only
PRG(b) stands between the server and the update. A b the server could guess
(a constant, or last round's, which it rebuilt legitimately) would expose it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from secagg_adversary import CheatingServer
from secagg_driver import Federation, random_updates

from securefl.errors import ProtocolError
from securefl.hazmat import prg
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.quantize import dequantize_sum
from securefl.secagg import MaskConfig
from securefl.secagg import _messages as m
from securefl.secagg._keys import mask_sign, pair_seed

D = 8
MAX_W = 100.0


def _round(
    fed: Federation, round_id: int, silent: str | None = None
) -> tuple[CheatingServer, dict[str, np.ndarray]]:
    """One round; ``silent`` sends its masked input, then the server declares it dropped."""
    ctx = fed.ctx(round_id, D, MAX_W)
    srv = CheatingServer(fed, ctx, fed.sites(ctx))
    updates = random_updates(fed.names, D)
    srv.advertise(updates, MAX_W)
    everyone = list(fed.names)
    srv.share(dict.fromkeys(everyone, everyone))
    srv.mask(dict.fromkeys(everyone, everyone))
    others = [s for s in everyone if s != silent]
    srv.sign(dict.fromkeys(others, others))
    dropped = [silent] if silent else []
    sigs = {s: srv.sigs[s] for s in others}
    srv.unmask(dict.fromkeys(others, (others, dropped, sigs)))
    return srv, updates


def _reads(srv: CheatingServer, owner: str, b: bytes, update: np.ndarray) -> bool:
    """Whether guessing ``b`` strips every mask from ``owner``'s input and shows its update."""
    s_sk = srv._secret(owner, "s")
    assert s_sk is not None, "the server should hold the dropped site's masking key"
    kp = KeyPair.from_private_bytes(s_sk)
    y = srv.inputs[owner].copy()
    masks = [(b, -1)]
    for j in sorted(set(srv.adverts) - {owner}):
        masks.append(
            (pair_seed(kp, srv.adverts[j]["s_pk"], srv.ctx, owner, j), -mask_sign(owner, j))
        )
    prg.add_masks(y, masks, bits=srv.plan.quant.bits)
    try:
        z = dequantize_sum(y, srv.plan.quant, summands=1)
    except ProtocolError:
        return False
    bound = 2 / srv.plan.quant.scale
    return bool(np.max(np.abs(z[1:] - np.clip(update, -1.0, 1.0))) <= bound)


def test_self_mask_seed_is_fresh_per_site_and_round_and_keeps_a_late_dropout_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    committed: dict[tuple[int, str], bytes] = {}  # what each site committed to, seen from inside
    commit = m.commit_self_seed

    def spy(federation: str, round_id: int, site: str, seed: bytes) -> bytes:
        committed.setdefault((round_id, site), seed)
        return commit(federation, round_id, site, seed)

    monkeypatch.setattr(m, "commit_self_seed", spy)
    fed = Federation(tmp_path, 5, MaskConfig(clip=1.0))
    first, _ = _round(fed, 1)
    seeds = {v: first._secret(v, "b") for v in fed.names}
    assert None not in seeds.values(), "an honest round rebuilds every survivor's b"
    assert len(set(seeds.values())) == len(seeds), "two sites used the same self-mask seed"

    victim = fed.names[0]
    second, updates = _round(fed, 2, silent=victim)
    assert not second.aborted
    assert second._secret(victim, "b") is None  # no b share of the dropped site left a holder
    fresh = {v: second._secret(v, "b") for v in fed.names if v != victim}
    assert all(fresh[v] != seeds[v] for v in fresh), "a site reused its self-mask seed"
    # The server holds the victim's masking key and every seed it has ever seen:
    # none of them unmasks the victim's input.
    guesses = [*seeds.values(), *fresh.values(), bytes(prg.SEED_LEN)]
    assert not any(_reads(second, victim, b, updates[victim]) for b in guesses)
    # ... while the victim's own b does: the attack is real, only b stops it.
    assert _reads(second, victim, committed[(2, victim)], updates[victim])
