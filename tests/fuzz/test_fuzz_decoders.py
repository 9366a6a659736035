"""Every decoder that takes bytes from another party raises only securefl's own errors.

A hostile site, server or network can send anything; a decoder that lets a
``TypeError`` or ``RecursionError`` escape crashes the loop that called it
(which catches ``SecureFLError`` and drops the sender). Each case below feeds
one decoder random bytes, mutated valid messages (byte flips, truncation,
spliced bytes, a field swapped for another type) and hostile shapes; see
``fuzz_harness.py``. Derandomized so a run is reproducible; ``run_fuzz.py``
runs 100,000 cases with fresh randomness.
"""

from __future__ import annotations

import logging

import pytest
from fuzz_harness import HOSTILE_JSON, check_target, classify, run_in_child
from fuzz_targets import NATIVE, Target, pure_targets

from securefl.errors import SecureFLError

PURE = pure_targets()
CASES_PER_DECODER = 150
CASES_PER_NATIVE_DECODER = 60


@pytest.fixture(autouse=True)
def _quiet() -> None:
    logging.getLogger("securefl").setLevel(logging.ERROR)


@pytest.mark.parametrize("name", sorted(PURE))
def test_decoder_raises_only_project_errors(name: str) -> None:
    cases, failures = check_target(PURE[name], CASES_PER_DECODER, derandomize=True)
    assert cases >= CASES_PER_DECODER // 2
    assert failures == [], f"{name}: {failures[0][0]} on input {failures[0][1][:64].hex()}"


def test_he_decoders_raise_only_project_errors_and_never_crash() -> None:
    """TenSEAL parses these bytes in native code: fuzzed in a child, so a crash is a failure."""
    outcomes = run_in_child(NATIVE, CASES_PER_NATIVE_DECODER, derandomize=True)
    assert [o.name for o in outcomes] == NATIVE, outcomes[0].failures
    for outcome in outcomes:
        assert outcome.cases >= CASES_PER_NATIVE_DECODER // 2, outcome.name
        assert outcome.failures == [], f"{outcome.name}: {outcome.failures[:3]}"


def test_child_reports_a_native_crash_instead_of_dying_with_the_runner() -> None:
    """The harness itself: a decoder that aborts the process is reported, with its input."""
    outcomes = run_in_child(["selftest/abort"], 5, derandomize=True)
    assert len(outcomes) == 1 and outcomes[0].crashed
    assert "selftest/abort input saved to" in outcomes[0].failures[0]


def test_the_property_catches_a_foreign_exception() -> None:
    """The harness itself: a decoder leaking a TypeError is a failure, a SecureFLError is not."""

    def leaky(data: bytes) -> None:
        if data[:1] == b"\x00":
            raise TypeError("leaked")
        raise SecureFLError("fine")

    target = Target("selftest/leaky", leaky, [b"\x00\x01"], codec="raw")
    assert classify(target, b"\x00") == "TypeError: leaked"
    assert classify(target, b"\x01") is None
    _, failures = check_target(target, 50, derandomize=True)
    assert failures


@pytest.mark.parametrize("data", HOSTILE_JSON[:4], ids=["deep-array", "deep-object", "huge", "int"])
def test_record_and_roster_readers_refuse_deep_or_huge_json(data: bytes) -> None:
    """Regression (found by fuzzing): deep nesting raised RecursionError, a 5,000-digit
    number ValueError, out of read_record_file and Roster.load instead of a DataError."""
    for name in ("reports/record", "reports/roster"):
        assert classify(PURE[name], data) is None, name


@pytest.mark.parametrize("scale", ["", None, {}, float("nan"), float("inf"), -1.0, 0.0])
def test_he_aggregate_with_a_bad_weight_scale_is_a_wire_error(scale: object) -> None:
    """Regression (found by fuzzing he/aggregate): a weight_scale that is not a positive
    finite float escaped decrypt_sum as ValueError/TypeError, or scaled the mean by NaN."""
    import numpy as np

    from securefl.aggregation.base import RoundContext
    from securefl.errors import WireError
    from securefl.hazmat.sign import SigningKey
    from securefl.he import BFV_N4096, HEServerMode, HESiteMode, SecretContext
    from securefl.he._decrypt import decrypt_sum
    from securefl.wire import pack, unpack

    secret = SecretContext.generate(BFV_N4096, clip=0.1)
    cohort = ("a", "b", "c")
    keys = {s: SigningKey.generate() for s in cohort}
    roster = {s: k.public_bytes() for s, k in keys.items()}
    public = secret.signed_public_context(federation="f", maker="a", signing_key=keys["a"])
    ctx = RoundContext(federation="f", round=1, cohort=cohort, dimension=8, max_weight=4.0)
    server = HEServerMode(public, roster=roster, federation="f").server(ctx)
    for s in cohort:
        mode = HESiteMode(secret, site_id=s, signing_key=keys[s], max_weight=4.0, processes=False)
        server.handle(mode.site(ctx, s).submit(np.zeros(8, np.float32), 2.0)[0])
    assert server.result is not None and server.result.encrypted_sum is not None
    blob = unpack(server.result.encrypted_sum)
    blob["weight_scale"] = scale
    with pytest.raises(WireError):
        decrypt_sum(secret, pack(blob), 8, roster=roster, federation="f", max_weight=4.0)


_EMPTY_CIPHERTEXT_ATTACK = """
import logging
import numpy as np
import securefl.he._site as site_half
from securefl.aggregation.base import RoundContext
from securefl.errors import WireError
from securefl.hazmat.sign import SigningKey
from securefl.he import BFV_N4096, CKKS_N4096, HEServerMode, HESiteMode, SecretContext

logging.getLogger("securefl").setLevel(logging.ERROR)
honest_encrypt = site_half.encrypt_chunks

def hollow_encrypt(*args, **kwargs):
    # a cheating site signs a chunk whose one flipped byte renames the protobuf field
    # holding the ciphertexts (2): the vector loads at the right size with no ciphertext
    chunks = honest_encrypt(*args, **kwargs)
    chunk = bytearray(chunks[0])
    assert chunk[:4] == bytes.fromhex("0a010812")
    chunk[3] = 0x5A
    return [bytes(chunk), *chunks[1:]]

cohort = ("a", "b", "c")
for preset in (BFV_N4096, CKKS_N4096):
    secret = SecretContext.generate(preset, clip=0.1)
    keys = {s: SigningKey.generate() for s in cohort}
    roster = {s: k.public_bytes() for s, k in keys.items()}
    public = secret.signed_public_context(federation="f", maker="a", signing_key=keys["a"])
    ctx = RoundContext(federation="f", round=1, cohort=cohort, dimension=8, max_weight=4.0)
    modes = {
        s: HESiteMode(secret, site_id=s, signing_key=keys[s], max_weight=4.0, processes=False)
        for s in cohort
    }
    honest = modes["a"].site(ctx, "a").submit(np.full(8, 0.01, np.float32), 2.0)[0]
    site_half.encrypt_chunks = hollow_encrypt
    hostile = modes["b"].site(ctx, "b").submit(np.full(8, 0.01, np.float32), 2.0)[0]
    site_half.encrypt_chunks = honest_encrypt
    server = HEServerMode(public, roster=roster, federation="f").server(ctx)
    server.handle(honest)
    server.handle(hostile)
    assert isinstance(server.rejected["b"], WireError), server.rejected
print("refused")
"""


def test_he_update_with_no_ciphertext_in_its_chunk_is_refused_not_a_server_crash() -> None:
    """Regression (found by the 100,000-case fuzz run, he/update): one flipped protobuf tag
    byte left a TenSEAL vector of the right size holding no ciphertext, and adding it to
    the running sum segfaulted the server. Run in a child so the crash it guards against
    cannot take the test runner down."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [sys.executable, "-c", _EMPTY_CIPHERTEXT_ATTACK],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.strip() == "refused"
