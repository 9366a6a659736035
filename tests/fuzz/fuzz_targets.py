"""The decoders that take bytes from another party, each with valid inputs to mutate.

``pure_targets`` are Python decoders (fuzzed in-process); ``native_targets``
hand bytes to TenSEAL and are fuzzed in a child process (``fuzz_harness.py``).
Seeds are real messages, built with the project's own encoders where they
exist, so mutations start from what a peer would really send.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NATIVE = [
    "he/public-context",
    "he/secret-context",
    "he/ciphertext-bfv",
    "he/ciphertext-ckks",
    "he/update",
    "he/aggregate",
    "he/encrypted-model",
]


@dataclass
class Target:
    """One decoder: how to call it on bytes, valid inputs to mutate, and their encoding."""

    name: str
    call: Callable[[bytes], object]
    seeds: list[bytes]
    codec: str = "msgpack"  # "msgpack", "json" or "raw": how type swaps re-encode
    native: bool = False  # runs TenSEAL: fuzz it in a child process
    extra: list[bytes] = field(default_factory=list)


# -- the targets -----------------------------------------------------------------


def pure_targets() -> dict[str, Target]:
    """Decoders written in Python (fuzzed in-process)."""
    import numpy as np

    from securefl.aggregation.base import RoundContext
    from securefl.aggregation.plain import PlainMode
    from securefl.runtime import messages as m
    from securefl.runtime.global_model import decode_plain_model
    from securefl.secagg import _messages as sm
    from securefl.wire import Envelope, array_to_wire, pack

    out: list[Target] = []
    env = Envelope(
        federation="fed", round=3, stage="mask/share", sender="a", receiver="server", payload=b"xy"
    )
    out.append(Target("envelope", Envelope.from_bytes, [env.to_bytes()]))

    cohort = ("site-a", "site-b", "site-c")
    spec = {"names": ["w", "b"], "shapes": [[2, 3], [2]], "dtypes": ["float32", "float32"]}
    runtime = {
        "runtime/round-start": (
            m.RoundStart,
            m.RoundStart(
                cohort=cohort, model=b"\x00" * 32, spec=spec, max_weight=100.0, min_sites=2,
                run="0f",
                config={"mu": 0.01},
            ),
        ),
        "runtime/report": (m.Report, m.Report(metrics={"loss": 0.5, "accuracy": 0.9})),
        "runtime/round-end": (m.RoundEnd, m.RoundEnd(status="aggregated", survivors=cohort)),
        "runtime/finish": (m.Finish, m.Finish(model=b"\x01" * 16, reason="converged", rounds=4)),
    }  # fmt: skip
    for name, (cls, msg) in runtime.items():
        out.append(Target(name, lambda d, c=cls: m.decode(d, c), [msg.to_bytes()]))

    key, sig = b"k" * sm.KEY_LEN, b"s" * 64
    advert = {"c_pk": key, "s_pk": key, "commit": b"c" * 32, "sig": sig}
    share_ct = {s: b"e" * sm.SHARE_CT_LEN for s in cohort}
    stages = {
        sm.ADVERTISE: advert,
        sm.SHARE: {"shares": share_ct},
        sm.MASKED_INPUT: {"bits": 20, "n": 4, "y": sm.pack_ring(np.arange(4, dtype=np.uint32), 20)},
        sm.CONSISTENCY: {"sig": sig},
        sm.UNMASK: {"b": {"site-a": b"b" * 66}, "s": {"site-b": b"s" * 66}},
        sm.SHARE_REQUEST: {"adverts": {s: advert for s in cohort}},
        sm.MASKED_INPUT_REQUEST: {"senders": list(cohort), "shares": share_ct},
        sm.CONSISTENCY_REQUEST: {"survivors": list(cohort)},
        sm.UNMASK_REQUEST: {
            "survivors": list(cohort[:2]), "dropped": [cohort[2]],
            "signatures": {s: sig for s in cohort[:2]},
        },
    }  # fmt: skip
    for stage, fields_ in stages.items():
        seed = pack({"v": sm.VERSION, **fields_})
        out.append(Target(stage, lambda d, s=stage: sm.decode(s, d, cohort_size=5), [seed]))
    ring = sm.pack_ring(np.arange(16, dtype=np.uint32) * 1000, 20)
    out.append(Target("mask/ring", lambda d: sm.unpack_ring(d, 16, 20), [ring], codec="raw"))

    ctx = RoundContext(federation="fed", round=1, cohort=cohort, dimension=4, max_weight=10.0)
    vector = array_to_wire(np.ones(4, dtype=np.float32))

    plain = PlainMode()

    def plain_update(data: bytes) -> object:
        server = plain.server(ctx)
        return server.handle(
            Envelope(federation="fed", round=1, stage="plain/update", sender="site-a",
                     receiver="server", payload=data)
        )  # fmt: skip

    out.append(Target("plain/update", plain_update, [pack({"weight": 2.0, "vector": vector})]))
    out.append(Target("runtime/plain-model", lambda d: decode_plain_model(d, 4), [pack(vector)]))
    out += _report_targets()
    return {t.name: t for t in out}


def _report_targets() -> list[Target]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from securefl.reports import Roster
    from securefl.reports._canonical import canonical_bytes, sign_record
    from securefl.reports.records import read_record_file

    workdir = Path(tempfile.mkdtemp(prefix="securefl-fuzz-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    key = Ed25519PrivateKey.generate()
    record: dict[str, Any] = {
        "version": 1, "federation": "fed", "site": "site-a", "round_id": 0,
        "event": {"noise_multiplier": 1.1, "sample_rate": 0.01, "steps": 100,
                  "max_grad_norm": 1.0, "secure_rng": True},
        "dataset_size": 500, "expected_batch_size": 5, "accountant": "rdp", "delta": 1e-5,
        "epsilon": 0.5, "epsilon_budget": 2.0, "model_hash": "ab" * 32, "prev_hash": "0" * 64,
    }  # fmt: skip
    record["signature"] = sign_record(record, key)
    roster = Roster("fed", {"site-a": b"\x01" * 32, "site-b": b"\x02" * 32})

    def via_file(reader: Callable[[Path], object]) -> Callable[[bytes], object]:
        path = workdir / "input"

        def call(data: bytes) -> object:
            path.write_bytes(data)
            return reader(path)

        return call

    return [
        Target("reports/record", via_file(read_record_file), [canonical_bytes(record)], "json"),
        Target(
            "reports/roster",
            via_file(Roster.load),
            [json.dumps(roster.to_dict()).encode()],
            "json",
        ),
    ]


def native_targets() -> dict[str, Target]:
    """Decoders that hand foreign bytes to TenSEAL (fuzz these in a child process)."""
    import numpy as np

    from securefl.aggregation.base import RoundContext
    from securefl.config import StrategyConfig
    from securefl.hazmat.sign import SigningKey
    from securefl.he import BFV_N4096, CKKS_N4096, HEServerMode, HESiteMode, SecretContext
    from securefl.he._codec import encrypt_chunks, load_chunks
    from securefl.he._context import PublicContext
    from securefl.he._decrypt import decrypt_sum
    from securefl.runtime.encrypted_model import EncryptedAggregatesModel, EncryptedModelDecoder
    from securefl.strategy import make_strategy
    from securefl.wire import Envelope

    bfv = SecretContext.generate(BFV_N4096, clip=0.1)
    ckks = SecretContext.generate(CKKS_N4096)
    dim = 8
    cohort = ("site-a", "site-b", "site-c")
    keys = {s: SigningKey.generate() for s in cohort}
    roster = {s: k.public_bytes() for s, k in keys.items()}
    signed = {"federation": "fed", "maker": "site-a", "signing_key": keys["site-a"]}
    ctx = RoundContext(federation="fed", round=1, cohort=cohort, dimension=dim, max_weight=10.0)
    server_mode = HEServerMode(bfv.signed_public_context(**signed), roster=roster, federation="fed")
    site_modes = {
        s: HESiteMode(bfv, site_id=s, signing_key=keys[s], max_weight=10.0, processes=False)
        for s in cohort
    }
    updates = [
        site_modes[s].site(ctx, s).submit(np.full(dim, 0.01, dtype=np.float32), 2.0)[0]
        for s in cohort
    ]
    server = server_mode.server(ctx)
    for envelope in updates:
        server.handle(envelope)
    result = server.result
    assert result is not None and result.encrypted_sum is not None
    chunk = encrypt_chunks(bfv, np.arange(dim, dtype=np.int64), workers=1)[0]
    ckks_chunk = encrypt_chunks(ckks, np.linspace(-1, 1, dim), workers=1)[0]

    def he_update(data: bytes) -> object:
        fresh = server_mode.server(ctx)
        fresh.handle(updates[1])  # a valid first summand, so the fuzzed one is added to it
        return fresh.handle(
            Envelope(federation="fed", round=1, stage="he/update", sender="site-a",
                     receiver="server", payload=data)
        )  # fmt: skip

    strategy = StrategyConfig()
    model = EncryptedAggregatesModel(np.zeros(dim, dtype=np.float32), strategy)
    model.apply(result, make_strategy(strategy), 1)

    def encrypted_model(data: bytes) -> object:
        decoder = EncryptedModelDecoder(
            site_modes["site-c"], roster=roster, federation="fed", strategy=strategy, min_sites=3
        )
        return decoder(data, dim)

    targets = [
        Target(
            "he/public-context",
            PublicContext.from_bytes,
            [bfv.public_context_bytes(), ckks.public_context_bytes()],
        ),
        Target(
            "he/secret-context",
            SecretContext.from_bytes,
            [bfv.to_bytes(include_secret_key=True), ckks.to_bytes(include_secret_key=True)],
        ),
        Target("he/ciphertext-bfv", lambda d: load_chunks(bfv, [d], dim), [chunk], "raw"),
        Target("he/ciphertext-ckks", lambda d: load_chunks(ckks, [d], dim), [ckks_chunk], "raw"),
        Target("he/update", he_update, [updates[0].payload]),
        Target(
            "he/aggregate",
            lambda d: decrypt_sum(bfv, d, dim, roster=roster, federation="fed", max_weight=10.0),
            [result.encrypted_sum],
        ),
        Target("he/encrypted-model", encrypted_model, [model.payload()]),
    ]
    return {t.name: t for t in targets}
