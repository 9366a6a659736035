"""``Site.from_kit`` and ``securefl client``: the site is built from its own kit and nothing else.

The site pins the roster of its kit: a cohort naming anyone else is refused
before any privacy is spent, and a message not signed by the roster's server
key never reaches the site. The client command reports every way a run ends
as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from conftest import SITES
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.cli import cli
from securefl.deploy.server import build_server
from securefl.deploy.site import site_transport
from securefl.errors import BudgetExhaustedError, ProtocolError
from securefl.params import ParamSpec
from securefl.provision.kit import Kit
from securefl.reports.roster import Roster
from securefl.runtime import Site
from securefl.runtime import messages as m
from securefl.runtime.global_model import PlainGlobalModel
from securefl.transport.https_client import RetryPolicy
from securefl.transport.memory import MemoryHub
from securefl.wire import SERVER, Envelope


def _model(kit: Kit) -> nn.Module:
    model = nn.Sequential(nn.Linear(8, 2))
    assert ParamSpec.from_state_dict(model.state_dict()) == kit.spec
    return model


def _privatized(site: Site, model: nn.Module) -> nn.Module:
    data = TensorDataset(torch.randn(64, 8), torch.randint(0, 2, (64,)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model, _, _ = site.privatize(model, opt, DataLoader(data, batch_size=16))
    return model


def test_a_site_from_its_kit_pins_the_roster_and_keeps_its_state_in_the_kit(kits: Path):
    hub = MemoryHub()
    server = hub.connect(SERVER)
    site = Site.from_kit(kits / "site-a", transport=hub.connect("site-a"))
    kit = Kit.load(kits / "site-a")
    assert site.name == "site-a" and site.roster == frozenset(SITES)
    assert site.state_dir == kit.state_dir
    # the auditor's roster lands next to the records, with the server's key
    roster = Roster.load(kit.state_dir / "roster.json")
    assert roster.server == kit.roster.identity_keys()[SERVER]
    assert (kit.state_dir / "records").is_dir()

    # a cheating coordinator adds a site of its own to the cohort: refused, nothing spent
    model = _privatized(site, _model(kit))
    start = m.RoundStart(
        cohort=("mallory", "site-a", "site-b"),
        model=PlainGlobalModel(kit.initial_params()).payload(),
        spec=kit.spec.to_dict(),
        max_weight=1000.0,
        min_sites=3,
        run="0f",
    ).to_bytes()
    server.send(
        Envelope(federation="ward", round=1, stage=m.ROUND_START, sender=SERVER,
                 receiver="site-a", payload=start)
    )  # fmt: skip
    with pytest.raises(ProtocolError, match="mallory"):
        for _ in site.rounds(model):
            pytest.fail("a round with a stranger in its cohort was started")
    assert site.ledger.history() == []


def test_a_deployed_site_takes_messages_only_under_the_roster_server_key(kits: Path):
    from securefl.hazmat.sign import SigningKey

    server = build_server(kits / "server", host="127.0.0.1", port=0)
    server.http.start()
    kit = Kit.load(kits / "site-a")
    transport = site_transport(
        kit,
        server_url=f"https://127.0.0.1:{server.port}",
        retry=RetryPolicy(attempts=2, base=0.01, cap=0.05),
    )
    try:
        note = Envelope(federation="ward", round=0, stage="fed/x", sender=SERVER,
                        receiver="site-a", payload=b"1")  # fmt: skip
        server.transport._key = SigningKey.generate()  # a server that is not the roster's
        server.transport.send(note)
        assert transport.receive(timeout=1.0) is None  # dropped unread
        server.transport._key = Kit.load(kits / "server").signing_key()
        server.transport.send(note)
        assert transport.receive(timeout=5.0) == note
    finally:
        transport.close()
        server.transport.close()
        server.http.stop()


def test_client_options_errors_are_one_line(kits: Path, tmp_path: Path):
    runner = CliRunner()
    both = runner.invoke(
        cli, ["client", "--kit", str(kits / "site-a"), "--train", "x:y", "--data", "a.csv"]
    )
    assert both.exit_code == 2 and "either --train" in both.output
    missing = runner.invoke(
        cli, ["client", "--kit", str(kits / "site-a"), "--train", "no_such_module_xyz:train"]
    )
    assert missing.exit_code == 2 and "cannot import 'no_such_module_xyz'" in missing.output
    assert "Traceback" not in missing.output
    server_kit = runner.invoke(cli, ["client", "--kit", str(kits / "server"), "--train", "x:y"])
    assert server_kit.exit_code == 2


def test_client_train_function_is_imported_from_the_current_directory(
    kits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """``--train my_trainer:train`` finds the user's module in the current directory."""
    (tmp_path / "my_trainer_for_test.py").write_text(
        "from securefl.errors import BudgetExhaustedError\n"
        "def train(site):\n"
        "    raise BudgetExhaustedError(f'{site.name} would pass its budget in round 3')\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, ["client", "--kit", str(kits / "site-a"), "--train", "my_trainer_for_test:train"]
    )
    assert result.exit_code == BudgetExhaustedError.exit_code, result.output
    assert "stopped: this site's privacy budget is spent (site-a would pass" in result.output


def test_a_site_from_its_kit_refuses_a_ca_issued_server_certificate_the_roster_does_not_pin(
    kits: Path, impostor: tuple[Any, int]
):
    """Whoever holds the CA key can issue a second certificate for the server's name; the
    kit's site refuses it (the roster pins the server's certificate), and sends nothing."""
    from securefl.errors import TransportError

    server, port = impostor
    transport = site_transport(
        Kit.load(kits / "site-a"),
        server_url=f"https://127.0.0.1:{port}",
        retry=RetryPolicy(attempts=2, base=0.01, cap=0.05),
    )
    try:
        hello = Envelope(federation="ward", round=0, stage=m.HELLO, sender="site-a",
                         receiver=SERVER, payload=b"")  # fmt: skip
        with pytest.raises(TransportError, match="not the federation's server"):
            transport.send(hello)
        assert server.receive(timeout=0.5) is None  # not a byte of the hello arrived
    finally:
        transport.close()
