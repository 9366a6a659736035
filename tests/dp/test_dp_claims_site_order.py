"""A site's update leaves only after the privacy it spent is committed and recorded.

The server is the party that must not get an update the site has not paid
for: the test listens on the server's end of the transport and, at the
instant each of the site's messages arrives there, reads the site's ledger
and signed records. An update that arrives while its round is still pending
(sent first, committed after) would be a release the ledger could still
refuse to record as the round that was run.
"""

from __future__ import annotations

from pathlib import Path

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from securefl.aggregation import PlainMode
from securefl.config import DPConfig, RoundConfig, TrainConfig
from securefl.params import ParamSpec, model_vector
from securefl.reports import RecordWriter
from securefl.reports.records import read_record_file
from securefl.runtime import messages as m
from securefl.runtime.global_model import PlainGlobalModel
from securefl.runtime.site import Site
from securefl.transport import MemoryHub
from securefl.wire import SERVER, Envelope

N_EXAMPLES = 32


def _recorded(path: Path) -> list[int]:
    if not path.exists():
        return []
    good, bad = read_record_file(path)
    assert not bad
    return [r.record["round_id"] for r in good]


def test_the_update_reaches_the_server_only_after_its_round_is_committed_and_recorded(
    tmp_path: Path,
) -> None:
    hub = MemoryHub()
    server = hub.connect(SERVER)
    records = tmp_path / "a.jsonl"
    writer = RecordWriter(
        records, federation="f", site="a", signing_key=Ed25519PrivateKey.generate()
    )
    site = Site(
        name="a",
        federation="f",
        transport=hub.connect("a"),
        mode=PlainMode(),
        dp=DPConfig(epsilon=5.0, noise_multiplier=1.0, batch_size=8),
        train=TrainConfig(),
        rounds=RoundConfig(max_rounds=2, stage_timeout_seconds=5),
        state_dir=tmp_path / "state",
        record_writer=writer,
    )
    seen: list[tuple[str, list[str], list[int]]] = []

    def at_the_server(data: bytes) -> None:
        env = Envelope.from_bytes(data)
        statuses = [e.status for e in site.ledger.history()]
        seen.append((env.stage, statuses, _recorded(records)))

    hub.tap(SERVER, at_the_server)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    data = TensorDataset(torch.randn(N_EXAMPLES, 3), torch.randint(0, 2, (N_EXAMPLES,)))
    model, opt, loader = site.privatize(
        model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(data, batch_size=8)
    )
    spec = ParamSpec.from_state_dict(model._module.state_dict())
    start = m.RoundStart(
        cohort=("a", "b"),
        model=PlainGlobalModel(model_vector(model, spec)).payload(),
        spec=spec.to_dict(),
        max_weight=100.0,
        min_sites=2,
        run="0f",
    ).to_bytes()
    server.send(
        Envelope(
            federation="f", round=1, stage=m.ROUND_START, sender=SERVER, receiver="a", payload=start
        )
    )
    rounds = site.rounds(model)
    rnd = next(rounds)
    for x, y in loader:
        opt.zero_grad()
        out = model(x)
        (nn.functional.cross_entropy(out, y) if len(y) else out.sum()).backward()
        opt.step()
    rnd.submit(num_examples=N_EXAMPLES)
    rounds.close()

    released = [(stage, st, rec) for stage, st, rec in seen if stage not in (m.HELLO, m.BYE)]
    assert [stage for stage, _, _ in released] == [m.REPORT, "plain/update"]
    for stage, statuses, recorded in released:
        # the round was paid for, in the ledger and in the signed chain, before this arrived
        assert statuses == ["committed"], (stage, statuses)
        assert recorded == [1], (stage, recorded)
