"""Every byte the server receives, recorded: no site's update is in it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from secagg_driver import Federation, random_updates, run_round

from securefl.secagg import MaskConfig
from securefl.secagg import _messages as m
from securefl.wire import Envelope, unpack

D = 4000
CLIP = 1.0


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    fed = Federation(Path(tmp_path_factory.mktemp("view")), 4, MaskConfig(clip=CLIP))
    updates = random_updates(fed.names, D, scale=0.3)
    weights = dict.fromkeys(fed.names, 100.0)  # weight = max_weight: z = clip(Δ) exactly
    run = run_round(
        fed,
        fed.ctx(1, D, max_weight=100.0),
        updates,
        weights,
        drop={fed.names[3]: "mask/masked-input"},
    )
    assert run.result is not None
    return fed, updates, run


def test_update_bytes_never_reach_the_server(recorded) -> None:  # type: ignore[no-untyped-def]
    fed, updates, run = recorded
    seen = b"".join(run.server_log)
    for s in fed.names:
        raw = updates[s].tobytes()
        windows = [raw[i : i + 8] for i in range(0, len(raw) - 8, 8)]
        assert not any(w in seen for w in windows), f"{s}'s float32 update leaked"
        raw64 = updates[s].astype(np.float64).tobytes()
        assert not any(raw64[i : i + 16] in seen for i in range(0, 16 * 50, 16))


def _masked_inputs(run) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    out = {}
    for raw in run.server_log:
        env = Envelope.from_bytes(raw)
        if env.stage == m.MASKED_INPUT:
            body = unpack(env.payload)
            out[env.sender] = m.unpack_ring(body["y"], body["n"], body["bits"])
    return out


def test_quantized_values_do_not_appear_in_masked_inputs(recorded) -> None:  # type: ignore[no-untyped-def]
    fed, updates, run = recorded
    q = fed.config.quantization(len(fed.names))
    for s, y in _masked_inputs(run).items():
        lo = np.floor(np.clip(updates[s].astype(np.float64), -CLIP, CLIP) * q.scale)
        lo = (lo.astype(np.int64).view(np.uint64) & np.uint64(q.modulus_mask)).astype(np.uint32)
        body = y[1:]
        hits = int(np.sum((body == lo) | (body == (lo + 1) & q.modulus_mask)))
        # By chance about 2 * D / 2**bits coordinates coincide; unmasked, all D would.
        assert hits <= 10, f"{s}: {hits} coordinates carry the quantized update"


def test_masked_inputs_look_uniform(recorded) -> None:  # type: ignore[no-untyped-def]
    fed, _, run = recorded
    bits = fed.config.quantization(len(fed.names)).bits
    for s, y in _masked_inputs(run).items():
        buckets = np.bincount((y >> np.uint32(bits - 4)).astype(np.int64), minlength=16)
        expected = y.size / 16
        chi2 = float(np.sum((buckets - expected) ** 2 / expected))
        # 15 degrees of freedom: P[chi2 > 70] < 1e-8 for uniform input.
        assert chi2 < 70, f"{s}: masked vector is far from uniform (chi2={chi2:.1f})"
