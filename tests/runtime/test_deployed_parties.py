"""Parties built only from what their own kit holds, over the memory transport.

The server gets the federation config and the roster's public keys (no site
key, no HE secret); each site gets its name, its own signing and exchange
keys, the roster and its state folder. In ``he`` mode the keymaker site makes
the keys at its first contact and the others get them sealed through the
server, before round 1. Nothing here reaches into ``securefl.simulation``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.config import DPConfig, FederationConfig, RoundConfig, StrategyConfig, TrainConfig
from securefl.hazmat.keys import KeyPair
from securefl.hazmat.sign import SigningKey
from securefl.modes import he_site_keys, server_half, site_setup
from securefl.params import ParamSpec, model_vector
from securefl.reports import read_record_file
from securefl.runtime import ServerDriver, Site, run_server
from securefl.strategy import make_strategy
from securefl.transport.memory import MemoryHub
from securefl.wire import SERVER

SITES = ("site-a", "site-b", "site-c")


def _model() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(3, 2))


def _train(site: Site, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    data = TensorDataset(
        torch.randn(32, 3, generator=gen), torch.randint(0, 2, (32,), generator=gen)
    )
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model, opt, loader = site.privatize(model, opt, DataLoader(data, batch_size=8))
    for rnd in site.rounds(model):
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        rnd.submit(num_examples=32)


@pytest.mark.parametrize(
    ("secure", "keymaker"), [("plain", None), ("mask", None), ("he", None), ("he", "site-c")]
)
def test_parties_built_from_their_own_keys_complete_a_federation(
    secure: str, keymaker: str | None, tmp_path: Path
) -> None:
    config = FederationConfig(
        name="deployed",
        secure=secure,
        dp=DPConfig(epsilon=50.0, noise_multiplier=1.0, batch_size=8),
        train=TrainConfig(),
        rounds=RoundConfig(max_rounds=2, min_sites=3, stage_timeout_seconds=20, max_weight=64.0),
        strategy=StrategyConfig(),
    )
    signing = {n: SigningKey.generate() for n in SITES}
    exchange = {n: KeyPair.generate() for n in SITES}
    identity = {n: k.public_bytes() for n, k in signing.items()}
    identity[SERVER] = SigningKey.generate().public_bytes()
    exchange_keys = {n: k.public_bytes() for n, k in exchange.items()}
    hub = MemoryHub()
    server_transport = hub.connect(SERVER)

    # the server: public material only
    half = server_half(
        secure,
        identity_keys=identity,
        federation=config.name,
        strategy=config.strategy,
        max_weight=config.rounds.max_weight,
        min_sites=config.rounds.min_sites,
        he_keymaker=keymaker,
    )
    assert (half.mode is None) == (secure == "he")
    initial = _model()
    spec = ParamSpec.from_state_dict(initial.state_dict())
    driver = ServerDriver(
        federation=config.name,
        mode=half.mode,
        keys=half.keys,
        build_mode=half.build_mode,
        strategy=make_strategy(config.strategy),
        model=half.global_model(model_vector(initial, spec)),
        spec=spec,
        rounds=config.rounds,
        max_weight=64.0,
        expected_sites=SITES,
    )

    # each site: its own keys, the roster, its state folder
    sites = []
    for name in SITES:
        state = tmp_path / name
        own_half, keys = site_setup(
            secure,
            name=name,
            signing_key=signing[name],
            identity_keys=identity,
            state_dir=state,
            federation=config.name,
            strategy=config.strategy,
            max_weight=config.rounds.max_weight,
            min_sites=config.rounds.min_sites,
            exchange_key=exchange[name],
            exchange_keys=exchange_keys,
            he_keymaker=keymaker,
        )
        assert (own_half is None) == (keys is not None) == (secure == "he")
        sites.append(
            Site.for_federation(
                name=name,
                config=config,
                identity_keys=identity,
                signing_key=signing[name],
                state_dir=state,
                transport=hub.connect(name),
                half=own_half,
                keys=keys,
            )
        )
    errors: dict[str, BaseException] = {}

    def site_main(site: Site, seed: int) -> None:
        try:
            _train(site, seed)
        except BaseException as exc:  # reported below, never hangs the server
            errors[site.name] = exc
            site.leave("failed")

    threads = [
        threading.Thread(target=site_main, args=(s, i), daemon=True) for i, s in enumerate(sites)
    ]
    for t in threads:
        t.start()
    run_server(
        driver,
        server_transport,
        stage_timeout=20,
        keep_running=lambda: any(t.is_alive() for t in threads),
        quiescent=lambda: hub.quiescent(SERVER),
    )
    for t in threads:
        t.join(timeout=20)
    assert errors == {}
    assert driver.completed_rounds == 2, [h.reason for h in driver.history]
    finals = [s.final_params for s in sites]
    assert all(f is not None for f in finals)
    for f in finals[1:]:
        np.testing.assert_allclose(f, finals[0], atol=1e-4)
    for site in sites:  # signed records in the site's own state folder, one per round
        records, bad = read_record_file(tmp_path / site.name / "records" / f"{site.name}.jsonl")
        assert len(records) == 2 and bad == []
        assert {r.record["round_id"] for r in records} == {1, 2}
    if secure == "he":  # the server built its half from the public context alone
        assert driver.mode is not None
        assert not driver.mode.context.tenseal.is_private()
        assert driver.mode.context.maker == (keymaker or "site-a")


def test_an_he_site_refuses_a_round_before_it_holds_the_keys(tmp_path: Path) -> None:
    """A server opening a round before delivering the keys costs the site no privacy."""
    from securefl.errors import ProtocolError
    from securefl.runtime import messages as m
    from securefl.runtime.global_model import PlainGlobalModel
    from securefl.wire import Envelope

    signing = {n: SigningKey.generate() for n in SITES}
    exchange = {n: KeyPair.generate() for n in SITES}
    identity = {n: k.public_bytes() for n, k in signing.items()}
    config = FederationConfig(
        name="deployed",
        secure="he",
        dp=DPConfig(epsilon=50.0, noise_multiplier=1.0, batch_size=8),
        rounds=RoundConfig(max_rounds=1, min_sites=3, stage_timeout_seconds=5, max_weight=64.0),
    )
    hub = MemoryHub()
    server = hub.connect(SERVER)
    keys = he_site_keys(
        name="site-b",
        signing_key=signing["site-b"],
        exchange_key=exchange["site-b"],
        exchange_keys={n: k.public_bytes() for n, k in exchange.items()},
        identity_keys=identity,
        state_dir=tmp_path,
        federation=config.name,
        strategy=config.strategy,
        max_weight=64.0,
        min_sites=3,
    )
    site = Site.for_federation(
        name="site-b",
        config=config,
        identity_keys=identity,
        signing_key=signing["site-b"],
        state_dir=tmp_path,
        transport=hub.connect("site-b"),
        keys=keys,
    )
    model = _model()
    spec = ParamSpec.from_state_dict(model.state_dict())
    start = m.RoundStart(
        cohort=SITES,
        model=PlainGlobalModel(model_vector(model, spec)).payload(),
        spec=spec.to_dict(),
        max_weight=64.0,
        min_sites=3,
        run="0f",
    ).to_bytes()
    server.send(
        Envelope(
            federation=config.name,
            round=1,
            stage=m.ROUND_START,
            sender=SERVER,
            receiver="site-b",
            payload=start,
        )
    )
    with pytest.raises(ProtocolError, match="before this site had its keys"):
        _train(site, 0)
    assert site.ledger.history() == []  # nothing reserved, nothing spent
