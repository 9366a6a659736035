"""Every decoder that takes bytes from another party, valid seeds for each, and mutations.

Shared by the fuzz tests (a few thousand cases per run) and ``run_fuzz.py``
(100,000). The property is the same everywhere: whatever the bytes, a
decoder returns or raises one of securefl's own errors (``SecureFLError``),
never anything else. TenSEAL is native code, so the ``he/*`` targets run in
a child process (``python fuzz_harness.py ...``): a segfault or abort there
kills the child, and the parent reports it as a failure with the input that
caused it, instead of losing the test runner.

Inputs are random bytes and, mostly, valid messages mutated: byte flips,
truncation, spliced bytes, a field swapped for a value of another type
(decoded, replaced, re-encoded), and a few hostile shapes (deep nesting,
floods of tiny containers, huge numbers) mixed in.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from securefl.errors import SecureFLError


@dataclass
class Target:
    """One decoder: how to call it on bytes, valid inputs to mutate, and their encoding."""

    name: str
    call: Callable[[bytes], object]
    seeds: list[bytes]
    codec: str = "msgpack"  # "msgpack", "json" or "raw": how type swaps re-encode
    native: bool = False  # runs TenSEAL: fuzz it in a child process
    extra: list[bytes] = field(default_factory=list)


def classify(target: Target, data: bytes) -> str | None:
    """None when the decoder behaved (returned or raised a SecureFLError), else the failure."""
    try:
        target.call(data)
    except SecureFLError:
        return None
    except Exception as exc:  # the property under test: nothing foreign escapes
        return f"{type(exc).__name__}: {str(exc)[:160]}"
    return None


# -- hostile shapes ------------------------------------------------------------

HOSTILE_MSGPACK = [
    b"\x91" * 3000 + b"\xc0",  # nested 3000 deep
    b"\xdd\x00\x04\x00\x00" + b"\x90" * 0x40000,  # 262,144 empty arrays
    b"\xdf\x00\x01\x00\x00" + b"\xa1k\x80" * 0x10000,  # a map of 65,536 empty maps
    b"\x87" + b"\xa1v\x01" * 7,  # seven copies of one key
    b"\xc7\x05\x01hello",  # an extension type
    b"\xd6\xff\x00\x00\x00\x00",  # a msgpack timestamp
    b"\xdb\xff\xff\xff\xff",  # a 4 GiB string header, no body
    b"\xc6\xff\xff\xff\xff",  # a 4 GiB bin header, no body
    b"\x81\x91\x00\x00",  # a list as a map key
    b"\x81\xc0\x00",  # nil as a map key
    b"\xa2\xff\xfe",  # invalid UTF-8
]
HOSTILE_JSON = [
    b"[" * 20_000 + b"]" * 20_000,
    b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
    b"9" * 5000,
    b'{"version": ' + b"1" * 5000 + b"}",
    b"1e999999",
    b"NaN",
    b'{"a": 1, "a": 2}',
    b"\xff\xfe\x00",
]

_SWAP_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=40),
    st.lists(st.integers(min_value=0, max_value=300), max_size=5),
    st.dictionaries(st.text(max_size=5), st.integers(min_value=0, max_value=9), max_size=3),
)


def _paths(obj: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> list[tuple[Any, ...]]:
    out = [prefix]
    if depth > 6:
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k), depth + 1)
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:20]):
            out += _paths(v, (*prefix, i), depth + 1)
    return out


def _replace(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        return {k: (_replace(v, rest, value) if k == head else v) for k, v in obj.items()}
    return [(_replace(v, rest, value) if i == head else v) for i, v in enumerate(obj)]


def _decode_seed(codec: str, seed: bytes) -> Any:
    if codec == "msgpack":
        return msgpack.unpackb(seed, raw=False, strict_map_key=False)
    return json.loads(seed)


def _encode(codec: str, obj: Any) -> bytes:
    if codec == "msgpack":
        return bytes(msgpack.packb(obj, use_bin_type=True))
    try:
        return json.dumps(obj).encode()
    except (TypeError, ValueError):  # bytes or non-str keys: not JSON, keep a text form
        return repr(obj).encode()


@st.composite
def fuzz_input(draw: st.DrawFn, target: Target) -> bytes:
    """Random bytes, a mutated seed, or a hostile shape for ``target``."""
    kind = draw(
        st.sampled_from(["random", "flip", "truncate", "splice", "swap", "swap", "hostile"])
    )
    if kind == "random":
        return bytes(draw(st.binary(max_size=300)))
    if kind == "hostile":
        pool = HOSTILE_JSON if target.codec == "json" else HOSTILE_MSGPACK
        return bytes(draw(st.sampled_from(pool + target.extra)))
    seed = bytearray(draw(st.sampled_from(target.seeds)))
    if kind == "flip" and seed:
        for _ in range(draw(st.integers(1, 8))):
            seed[draw(st.integers(0, len(seed) - 1))] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        seed = seed[: draw(st.integers(0, max(len(seed) - 1, 0)))]
    elif kind == "splice":
        at = draw(st.integers(0, len(seed)))
        cut = draw(st.integers(0, 16))
        seed[at : at + cut] = draw(st.binary(max_size=16))
    elif kind == "swap" and target.codec != "raw":
        obj = _decode_seed(target.codec, bytes(seed))
        path = draw(st.sampled_from(_paths(obj)))
        return _encode(target.codec, _replace(obj, path, draw(_SWAP_VALUES)))
    return bytes(seed)


def check_target(
    target: Target, examples: int, *, derandomize: bool
) -> tuple[int, list[tuple[str, bytes]]]:
    """Fuzz ``target`` with ``examples`` cases; return (cases run, every (failure, input))."""
    failures: list[tuple[str, bytes]] = []
    cases = [0]

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=derandomize,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(fuzz_input(target))
    def run(data: bytes) -> None:
        cases[0] += 1
        failure = classify(target, data)
        if failure is not None:
            failures.append((failure, data))

    run()
    return cases[0], failures


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
    from securefl.he import BFV_N4096, CKKS_N4096, HEServerMode, HESiteMode, SecretContext
    from securefl.he._aggregator import decrypt_sum
    from securefl.he._codec import encrypt_chunks, load_chunks
    from securefl.he._context import PublicContext
    from securefl.runtime.encrypted_model import EncryptedAggregatesModel, EncryptedModelDecoder
    from securefl.strategy import make_strategy
    from securefl.wire import Envelope

    bfv = SecretContext.generate(BFV_N4096, clip=0.1)
    ckks = SecretContext.generate(CKKS_N4096)
    dim = 8
    cohort = ("site-a", "site-b", "site-c")
    ctx = RoundContext(federation="fed", round=1, cohort=cohort, dimension=dim, max_weight=10.0)
    site_mode = HESiteMode(bfv, workers=1, processes=False)
    server_mode = HEServerMode(bfv.public_context_bytes())
    updates = [
        site_mode.site(ctx, s).submit(np.full(dim, 0.01, dtype=np.float32), 2.0)[0] for s in cohort
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
        return EncryptedModelDecoder(bfv)(data, dim)

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
        Target("he/aggregate", lambda d: decrypt_sum(bfv, d, dim), [result.encrypted_sum]),
        Target("he/encrypted-model", encrypted_model, [model.payload()]),
    ]
    return {t.name: t for t in targets}


# -- running targets in a child process ----------------------------------------------


#: Where the input that crashed a child is kept, to reproduce it.
CRASH_DIR = Path(tempfile.gettempdir()) / "securefl-fuzz-crashes"


@dataclass
class Outcome:
    """What fuzzing one target found."""

    name: str
    cases: int
    failures: list[str]
    seconds: float
    crashed: bool = False


def run_in_child(names: list[str], examples: int, *, derandomize: bool) -> list[Outcome]:
    """Fuzz ``names`` in a child process; a native crash is an outcome, not a lost runner."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="securefl-fuzz-") as tmp:
        report, progress = Path(tmp) / "report.json", Path(tmp) / "progress"
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
        )
        args = [sys.executable, __file__, "--examples", str(examples), "--report", str(report)]
        args += ["--progress", str(progress), *(["--derandomize"] if derandomize else []), *names]
        start = time.monotonic()
        proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        if proc.returncode == 0 and report.exists():
            return [Outcome(**o) for o in json.loads(report.read_text())]
        where = "before the first case"
        if progress.exists():  # the child wrote each input here before trying it
            name, _, data = progress.read_bytes().partition(b"\n")
            CRASH_DIR.mkdir(parents=True, exist_ok=True)
            saved = (
                CRASH_DIR
                / f"{name.decode().replace('/', '-')}-{hashlib.sha256(data).hexdigest()[:16]}.bin"
            )
            saved.write_bytes(data)
            where = f"{name.decode()} input saved to {saved} ({data[:32].hex()}...)"
        return [
            Outcome(
                name=",".join(names),
                cases=0,
                failures=[f"child exited {proc.returncode} at {where}: {proc.stderr[-800:]}"],
                seconds=time.monotonic() - start,
                crashed=True,
            )
        ]


def _child(argv: list[str]) -> None:
    logging.getLogger("securefl").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser()
    parser.add_argument("targets", nargs="+")
    parser.add_argument("--examples", type=int, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--progress", type=Path, required=True)
    parser.add_argument("--derandomize", action="store_true")
    args = parser.parse_args(argv)
    wanted = set(args.targets)
    pool = {
        **pure_targets(),
        **(native_targets() if any(n.startswith("he/") for n in wanted) else {}),
    }
    pool["selftest/abort"] = Target("selftest/abort", lambda _: os.abort(), [b"x"], codec="raw")
    outcomes = []
    for name in args.targets:
        target = pool[name]
        inner = target.call

        def traced(
            data: bytes, inner: Callable[[bytes], object] = inner, name: str = name
        ) -> object:
            args.progress.write_bytes(name.encode() + b"\n" + data)
            return inner(data)

        target.call = traced
        start = time.monotonic()
        cases, failures = check_target(target, args.examples, derandomize=args.derandomize)
        outcomes.append(
            Outcome(
                name=name,
                cases=cases,
                failures=[f"{f} <- {d[:64].hex()}" for f, d in failures],
                seconds=time.monotonic() - start,
            ).__dict__
        )
    args.report.write_text(json.dumps(outcomes))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    _child(sys.argv[1:])
