"""In ``simulate`` a site makes the HE keys; the server holds only the signed public context."""

from __future__ import annotations

from pathlib import Path

import pytest

from securefl.config import FederationConfig, HEConfig, RoundConfig, StrategyConfig
from securefl.errors import IntegrityError
from securefl.hazmat.sign import SigningKey
from securefl.he import HEServerMode, HESiteMode
from securefl.simulation.modes import SecureSetup, make_setup
from securefl.wire import SERVER

SITES = ("hospital-a", "hospital-b", "hospital-c")


def _setup(tmp_path: Path, roster_extra: dict[str, bytes] | None = None) -> SecureSetup:
    keys = {s: SigningKey.generate() for s in SITES}
    raw = {s: k.export_private(i_understand_this_exports_a_secret=True) for s, k in keys.items()}
    roster = {s: k.public_bytes() for s, k in keys.items()} | (roster_extra or {})
    config = FederationConfig(
        name="fed",
        secure="he",
        strategy=StrategyConfig(name="fedavg"),
        he=HEConfig(preset="ckks-n4096"),
        rounds=RoundConfig(min_sites=3),
    )
    return make_setup(
        config,
        signing_keys=raw,
        roster=roster,
        workdir=tmp_path,
        dropouts={},
        max_weight=100.0,
    )


def test_a_site_makes_the_keys_and_the_server_holds_no_secret(tmp_path: Path) -> None:
    # the server may have an identity on the roster too; it still never makes the keys
    setup = _setup(tmp_path, {SERVER: SigningKey.generate().public_bytes()})
    server = setup.server_mode
    assert isinstance(server, HEServerMode)
    assert server.context.maker == SITES[0]
    assert not server.context.tenseal.is_private()
    modes = [setup.site_mode(s) for s in SITES]
    assert all(isinstance(m, HESiteMode) for m in modes)
    assert {m.context.key_id for m in modes} == {server.context.key_id}
    # every site but the maker loaded the secret context from the maker's signed bytes
    assert [m.context.maker for m in modes[1:]] == [SITES[0]] * 2


def test_a_server_context_signed_for_another_federation_is_refused(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    maker = setup.site_mode(SITES[0])
    assert isinstance(maker, HESiteMode) and isinstance(setup.server_mode, HEServerMode)
    signed = maker.context.signed_public_context(
        federation="other", maker=SITES[0], signing_key=maker.signing_key
    )
    with pytest.raises(IntegrityError):
        HEServerMode(signed, roster=setup.server_mode.roster, federation="fed")
