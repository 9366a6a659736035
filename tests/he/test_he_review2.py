"""Second review of ``he`` mode: attacks tried that held, kept as regression tests.

Every attack below was tried against the current code and the protection
held; the tests pin that behaviour so a future change (another zstd, another
TenSEAL) that breaks it is caught. None of them fails today.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FEDERATION, MAX_WEIGHT, Kit
from test_he_aggregate import signed_update

from securefl.aggregation.base import RoundContext
from securefl.he import open_aggregate
from securefl.wire import unpack

HERE = Path(__file__).resolve().parent

# A cheating site signs one chunk whose SEAL ciphertext is a zstd frame that
# *declares* a content size within the bound _frame.py allows but holds
# compressed blocks regenerating far more (the first block of a zeroed size-16
# ciphertext, repeated). _frame.py trusts compressed blocks to the declared
# size; this pins that zstd, as SEAL bundles it, stops at that size.
_ZSTD_LIE_PROBE = r"""
import json, struct, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import tenseal.sealapi as sealapi
from conftest import craft_vector, make_kit, seal_bytes
from test_he_aggregate import signed_update
from securefl.aggregation.base import RoundContext
from securefl.he import BFV_N4096, SecretContext
from securefl.he._frame import check_chunk_frame

blocks_n, window = int(sys.argv[3]), int(sys.argv[4])
kit = make_kit(SecretContext.generate(BFV_N4096, clip=0.1))
seal = kit.secret.tenseal.seal_context().data
ct = sealapi.Ciphertext(seal)
ct.resize(seal, seal.first_parms_id(), 16)
raw = seal_bytes(ct, Path(sys.argv[2]))
magic, hs, major, minor, mode, reserved, _size = struct.unpack_from("<HBBBBHQ", raw)
body = raw[16:]
assert mode == 2 and body[4] == 0xA0, (mode, body[4])  # zstd, 4-byte FCS, single segment
first = body[9 : 9 + 3 + 73]
kind = (int.from_bytes(first[:3], "little") >> 1) & 3
assert kind == 2, kind  # a compressed block
head = int.from_bytes(first[:3], "little") & ~1
blocks = [head.to_bytes(3, "little") + first[3:]] * (blocks_n - 1)
blocks.append((head | 1).to_bytes(3, "little") + first[3:])
fhd = bytes([0xA0]) if window < 0 else bytes([0x80, window])
frame = body[:4] + fhd + (60000).to_bytes(4, "little") + b"".join(blocks)
ct2 = struct.pack("<HBBBBHQ", magic, hs, major, minor, mode, reserved, 16 + len(frame)) + frame
chunk = craft_vector("bfv", [ct2], [300])
check_chunk_frame(BFV_N4096, chunk, 300, 0)  # the frame check alone lets it through
rc = RoundContext(federation="f", round=1, cohort=("a", "b", "c"), dimension=300, max_weight=1.0)
server = kit.server_mode().server(rc)
env = signed_update(kit, "a", rc, [chunk], 1.0)
def peak_kib():
    status = Path("/proc/self/status").read_text()
    return int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1])
before = peak_kib()
server.handle(env)
after = peak_kib()
print(json.dumps({"payload": len(env.payload), "growth": (after - before) * 1024,
                  "rejected": sorted(server.rejected)}))
"""


@pytest.mark.parametrize(("blocks", "window"), [(1000, -1), (1, 0x88), (1000, 0x88)])
def test_a_zstd_frame_declaring_less_than_it_holds_is_refused_without_inflating(
    blocks: int, window: int, tmp_path: Path
) -> None:
    """~76 kB of repeated compressed blocks (~128 MB if inflated) under a 60 kB FCS.

    ``window`` 0x88 also clears the single-segment flag and declares a 128 MiB
    window. Held: the server refuses the chunk and grows by under 1 MiB.
    """
    probe = subprocess.run(
        [sys.executable, "-c", _ZSTD_LIE_PROBE, str(HERE), str(tmp_path), str(blocks), str(window)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
        check=False,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert report["rejected"] == ["a"]
    assert report["growth"] <= 8 * 2**20 + 4 * report["payload"], report


def test_the_tenseal_vector_scale_a_site_writes_does_not_change_the_sum(ckks_kit: Kit) -> None:
    """A cheating site rewrites the CKKSVectorProto scale (not SEAL's) in its signed chunk.

    _codec checks only the SEAL ciphertext's scale. Held: the server adds it,
    and the sum decrypts to the honest value whatever that field says.
    """
    kit, d, cohort = ckks_kit, 300, ("a", "b", "c")
    rc = RoundContext(
        federation=FEDERATION, round=9107, cohort=cohort, dimension=d, max_weight=MAX_WEIGHT
    )
    gen = np.random.default_rng(3)  # test data only
    xs = {s: (gen.normal(size=d) * 0.01).astype(np.float32) for s in cohort}
    envs = {s: kit.site_mode(s).site(rc, s).submit(xs[s], 50.0)[0] for s in cohort}
    honest = sum(xs[s].astype(np.float64) * 50.0 for s in cohort)
    (chunk,) = unpack(envs["a"].payload)["chunks"]
    assert chunk[-9] == 0x19  # field 3, fixed64: TenSEAL's own scale
    for scale in (1.0, 2.0**80):
        forged = chunk[:-8] + struct.pack("<d", scale)
        server = kit.server_mode().server(rc)
        server.handle(signed_update(kit, "a", rc, [forged], 50.0))  # "a" first: the accumulator
        for s in ("b", "c"):
            server.handle(envs[s])
        assert not server.rejected
        result = server.result
        assert result is not None and isinstance(result.encrypted_sum, bytes)
        opened = open_aggregate(
            kit.secret,
            result.encrypted_sum,
            d,
            roster=kit.roster,
            federation=FEDERATION,
            max_weight=MAX_WEIGHT,
        )
        np.testing.assert_allclose(opened.weighted_sum, honest, atol=1e-5)
