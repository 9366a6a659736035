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
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from fuzz_targets import NATIVE, Target, native_targets, pure_targets
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from securefl.errors import SecureFLError

__all__ = ["NATIVE", "Target", "check_target", "classify", "pure_targets", "run_in_child"]


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
