"""A restarted site and the messages its server still held for the incarnation that died.

Over HTTPS the server keeps each site's outbox until the site acknowledges
it, and a restarted ``securefl client`` polls from sequence 0: it is first
handed what the server queued for the process that was killed (a mask
stage request of the round it was in, say). The in-process restart tests
do not show this (a memory endpoint dies with its queue). Whatever such a
straggler is, answering it could reveal nothing (the new process holds no
key of that round), so the site drops it and takes the next round.

The adversary tests play a server that dresses messages as stragglers: a
round start it wants skipped instead of refused, a forged sender or another
federation's message, a malformed stage message of the round the site is in.
The drop path must take none of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from restart_harness import FAST, SITES, _model
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.config import DPConfig, FederationConfig, RoundConfig, StrategyConfig, TrainConfig
from securefl.errors import SecureFLError
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.sign import SigningKey
from securefl.modes import site_setup
from securefl.params import ParamSpec, model_vector
from securefl.runtime import Site
from securefl.runtime import messages as m
from securefl.runtime.global_model import PlainGlobalModel
from securefl.secagg import _messages as mask
from securefl.transport.base import Transport
from securefl.transport.memory import MemoryHub
from securefl.wire import SERVER, Envelope


def test_a_restarted_site_drops_a_straggler_of_the_round_it_was_killed_in(tmp_path: Path) -> None:
    config = FederationConfig(
        name="ward",
        secure="mask",
        dp=DPConfig(epsilon=50.0, noise_multiplier=1.0, batch_size=8),
        train=TrainConfig(),
        rounds=RoundConfig(max_rounds=3, min_sites=2, stage_timeout_seconds=20, max_weight=64.0),
        strategy=StrategyConfig(),
    )
    signing = {n: SigningKey.generate() for n in SITES}
    identity = {n: k.public_bytes() for n, k in signing.items()}
    exchange = {n: KeyPair.generate() for n in SITES}
    name = "site-a"
    half, keys = site_setup(
        "mask", name=name, signing_key=signing[name], identity_keys=identity,
        state_dir=tmp_path / name, federation="ward", strategy=config.strategy,
        max_weight=64.0, min_sites=2, exchange_key=exchange[name],
        exchange_keys={n: k.public_bytes() for n, k in exchange.items()},
    )  # fmt: skip
    hub = MemoryHub()
    server = hub.connect(SERVER)
    site = Site.for_federation(
        name=name, config=config, identity_keys=identity, signing_key=signing[name],
        state_dir=tmp_path / name, transport=hub.connect(name), half=half, keys=keys,
    )  # fmt: skip
    site._link.reconnect, site._link.sleep = FAST, lambda _s: None
    model = _model()
    spec = ParamSpec.from_state_dict(model.state_dict())
    final = PlainGlobalModel(np.zeros(spec.size, dtype=np.float32)).payload()

    def to_site(round_number: int, stage: str, payload: bytes) -> None:
        server.send(Envelope(federation="ward", round=round_number, stage=stage,
                             sender=SERVER, receiver=name, payload=payload))  # fmt: skip

    # what the server queued for the killed process: round 2's share request, unacknowledged
    to_site(2, mask.SHARE_REQUEST, mask.encode(mask.SHARE_REQUEST, adverts={}))
    to_site(2, m.FINISH, m.Finish(model=final, reason="done", rounds=2).to_bytes())
    data = TensorDataset(torch.randn(32, 3), torch.randint(0, 2, (32,)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model, opt, loader = site.privatize(model, opt, DataLoader(data, batch_size=8))
    assert model_vector(model, spec).shape == (spec.size,)
    for rnd in site.rounds(model):  # no round opens: the straggler, then the end
        for x, y in loader:
            nn.functional.cross_entropy(model(x), y).backward()
        rnd.submit(num_examples=32)
    assert site.finish_reason == "done"


def _mask_site(tmp_path: Path) -> tuple[Site, Transport, nn.Module]:
    config = FederationConfig(
        name="ward",
        secure="mask",
        dp=DPConfig(epsilon=50.0, noise_multiplier=1.0, batch_size=8),
        train=TrainConfig(),
        rounds=RoundConfig(max_rounds=3, min_sites=2, stage_timeout_seconds=20, max_weight=64.0),
        strategy=StrategyConfig(),
    )
    signing = {n: SigningKey.generate() for n in SITES}
    identity = {n: k.public_bytes() for n, k in signing.items()}
    exchange = {n: KeyPair.generate() for n in SITES}
    name = "site-a"
    half, keys = site_setup(
        "mask", name=name, signing_key=signing[name], identity_keys=identity,
        state_dir=tmp_path / name, federation="ward", strategy=config.strategy,
        max_weight=64.0, min_sites=2, exchange_key=exchange[name],
        exchange_keys={n: k.public_bytes() for n, k in exchange.items()},
    )  # fmt: skip
    hub = MemoryHub()
    server = hub.connect(SERVER)
    site = Site.for_federation(
        name=name, config=config, identity_keys=identity, signing_key=signing[name],
        state_dir=tmp_path / name, transport=hub.connect(name), half=half, keys=keys,
    )  # fmt: skip
    site._link.reconnect, site._link.sleep = FAST, lambda _s: None
    model = _model()
    data = TensorDataset(torch.randn(32, 3), torch.randint(0, 2, (32,)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model, opt, _ = site.privatize(model, opt, DataLoader(data, batch_size=8))
    return site, server, model


def _start(round_number: int, **overrides: object) -> Envelope:
    model = _model()  # the federation's plain model (the site's is wrapped for DP-SGD)
    spec = ParamSpec.from_state_dict(model.state_dict())
    fields: dict[str, object] = dict(
        cohort=SITES, model=PlainGlobalModel(model_vector(model, spec)).payload(),
        spec=spec.to_dict(), max_weight=64.0, min_sites=2, run="0f",
    )  # fmt: skip
    fields.update(overrides)
    start = m.RoundStart(**fields)  # type: ignore[arg-type]
    return Envelope(federation="ward", round=round_number, stage=m.ROUND_START,
                    sender=SERVER, receiver="site-a", payload=start.to_bytes())  # fmt: skip


@pytest.mark.parametrize(
    "cheat",
    [
        {"cohort": tuple(sorted((*SITES, "mallory")))},
        {"max_weight": 1e9},
        {"config": {"local_epochs": 5}},
    ],
    ids=["stranger-in-cohort", "max-weight", "local-epochs"],
)
def test_a_cheating_round_start_after_stragglers_is_refused_not_skipped(
    tmp_path: Path, cheat: dict[str, object]
) -> None:
    """Stragglers first, then a round start the site must refuse: it is refused, nothing spent.

    A drop path that took any message of a round the site is not in (a round
    start included) would skip it silently; the site would go on, and a
    server could open rounds on its own terms without the operator hearing.
    """
    site, server, model = _mask_site(tmp_path)
    straggler = mask.encode(mask.SHARE_REQUEST, adverts={})
    server.send(Envelope(federation="ward", round=2, stage=mask.SHARE_REQUEST,
                         sender=SERVER, receiver="site-a", payload=straggler))  # fmt: skip
    server.send(_start(3, **cheat))
    size = ParamSpec.from_state_dict(_model().state_dict()).size
    final = PlainGlobalModel(np.zeros(size, dtype=np.float32)).payload()  # a valid end
    server.send(Envelope(federation="ward", round=3, stage=m.FINISH, sender=SERVER,
                         receiver="site-a", payload=m.Finish(model=final, reason="done",
                                                              rounds=3).to_bytes()))  # fmt: skip
    with pytest.raises(SecureFLError):
        for _rnd in site.rounds(model):
            pytest.fail("a cheating round start was accepted")
    assert site.ledger.spent() == 0.0 and site.ledger.history() == []
    assert site.finish_reason == ""  # refused: the site did not skip on to the end
