"""Attacks on ``he`` mode found in review, and what the checks now do about each.

Each test plays a cheating server or a cheating site with the package's own
API and asserts the protection the documents promise. Where a protection
cannot exist in this design (the server adds ciphertexts no site may see
one by one), the test says so in its name and shows the limit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FEDERATION, MAX_WEIGHT, Kit

from securefl.aggregation.base import AggregateResult, RoundContext
from securefl.errors import SecureFLError
from securefl.he import OwnUpload, open_aggregate
from securefl.he._codec import ChunkSum, encrypt_chunks, load_chunks
from securefl.he._fixed_point import quantize
from securefl.strategy.fedavg import make_strategy
from securefl.wire import Envelope, pack, unpack

D = 300  # one chunk in every preset
COHORT = ("a", "b", "c")
HERE = Path(__file__).resolve().parent


def _rc(min_sites: int = 3) -> RoundContext:
    return RoundContext(
        federation=FEDERATION,
        round=5,
        cohort=COHORT,
        dimension=D,
        max_weight=100.0,
        min_sites=min_sites,
    )


def _xs() -> dict[str, Any]:
    gen = np.random.default_rng(8)  # test data only
    return {s: (gen.normal(size=D) * 0.01).astype(np.float32) for s in COHORT}


def _round(kit: Kit, rc: RoundContext) -> tuple[dict[str, Envelope], dict[str, Any]]:
    """An honest round: every cohort site uploads, the honest server sums them."""
    xs = _xs()
    envs = {s: kit.site_mode(s).site(rc, s).submit(xs[s], 50.0)[0] for s in COHORT}
    server = kit.server_mode().server(rc)
    for env in envs.values():
        server.handle(env)
    result = server.result
    assert result is not None and result.survivors == COHORT
    assert isinstance(result.encrypted_sum, bytes)
    return envs, unpack(result.encrypted_sum)


def _chunks(env: Envelope) -> list[bytes]:
    chunks: list[bytes] = unpack(env.payload)["chunks"]
    return chunks


def _open(kit: Kit, blob: bytes, **own: Any) -> Any:
    """Open as a site with the federation's configured max_weight (and ``own`` settings)."""
    return open_aggregate(
        kit.secret, blob, D, roster=kit.roster, federation=FEDERATION, max_weight=MAX_WEIGHT, **own
    )


def _server_sum(kit: Kit, envs: list[Envelope]) -> list[bytes]:
    """What a cheating server can add without any key: any uploads it received, repeats too."""
    public = kit.server_mode().context
    total = ChunkSum()
    for env in envs:
        total.add(load_chunks(public, _chunks(env), D))
    return total.serialize()


def _with_sum(kit: Kit, agg: dict[str, Any], envs: list[Envelope], **fields: Any) -> bytes:
    """The aggregate (its genuine headers unless ``fields`` says otherwise) over another sum."""
    return pack(dict(agg, chunks=_server_sum(kit, envs), **fields))


def _kits(bfv_kit: Kit, ckks_kit: Kit) -> list[Kit]:
    return [bfv_kit, ckks_kit]


# -- (d) a cheating server chooses what a site decrypts -----------------------------

COHORT4 = ("a", "b", "c", "d")


def _round4(kit: Kit) -> tuple[dict[str, Envelope], dict[str, Any]]:
    """An honest round of a, b, c, d (each site's own upload recorded in its took_part)."""
    rc = dataclasses.replace(_rc(), cohort=COHORT4)
    xs = _xs() | {"d": _xs()["a"][::-1].copy()}
    envs = {s: kit.site_mode(s).site(rc, s).submit(xs[s], 50.0)[0] for s in COHORT4}
    server = kit.server_mode().server(rc)
    for env in envs.values():
        server.handle(env)
    result = server.result
    assert result is not None and result.survivors == COHORT4, server.rejected
    assert isinstance(result.encrypted_sum, bytes)
    return envs, unpack(result.encrypted_sum)


def test_an_honest_server_gives_a_site_only_the_sum(bfv_kit: Kit, ckks_kit: Kit) -> None:
    """Every site holds the secret key, so no site may ever receive another's ciphertext.

    The aggregate an honest server sends holds none of the uploads' chunk
    bytes (no site's, so none another site could decrypt alone), is about
    the size of one upload rather than n of them, and decrypts to the sum.
    """
    for kit in _kits(bfv_kit, ckks_kit):
        envs, agg = _round(kit, _rc())
        blob = pack(agg)
        for s in COHORT:
            for chunk in _chunks(envs[s]):
                assert chunk not in blob, f"site {s}'s ciphertext reached the other sites"
        assert len(blob) < 1.5 * max(len(e.payload) for e in envs.values())
        assert [u[0] for u in agg["uploads"]] == list(COHORT)
        assert all(len(u) == 5 and isinstance(u[3], bytes) for u in agg["uploads"])
        opened = _open(kit, blob, site="c", took_part=kit.site_mode("c").took_part)
        honest = sum(_xs()[s].astype(np.float64) * 50.0 for s in COHORT)
        assert np.max(np.abs(opened.weighted_sum - honest)) < 0.02 * np.max(np.abs(honest))


def test_a_site_refuses_a_sum_that_leaves_out_its_own_upload(bfv_kit: Kit, ckks_kit: Kit) -> None:
    """Round of a, b, c, d: the server hands c a's update alone under the headers of a, b, d.

    Dropping a header to make room is refused: c took part, and the headers
    leave out the upload it sent. (With c's header kept, the sum itself
    cannot be checked: see the test below.)
    """
    for kit in _kits(bfv_kit, ckks_kit):
        envs, agg = _round4(kit)
        without_c = [u for u in agg["uploads"] if u[0] != "c"]
        forged = _with_sum(kit, agg, [envs["a"]], uploads=without_c)
        own = kit.site_mode("c").took_part
        assert _open(kit, forged).sites == ("a", "b", "d")  # a site that did not take part
        with pytest.raises(SecureFLError):
            opened = _open(kit, forged, site="c", took_part=own)
            lone = opened.weighted_sum / 50.0
            pytest.fail(
                f"{kit.secret.preset.name}: site c decrypted site a's update alone "
                f"(max error {np.max(np.abs(lone - _xs()['a'])):.2g}) under headers {opened.sites}"
            )
        assert _open(kit, pack(agg), site="c", took_part=own).sites == COHORT4


def test_a_site_refuses_a_sum_listing_another_upload_of_its_own(bfv_kit: Kit) -> None:
    """The header under c's name must carry the chunk digest of the upload c actually sent.

    c's upload reached the server, then c (restarted) signed a second one for
    the same round that the server never saw; c's took_part holds the second.
    The aggregate lists the first: c refuses, it is not the upload c stands by.
    """
    rc = _rc()
    _, agg = _round(bfv_kit, rc)
    own = bfv_kit.site_mode("c").took_part
    assert _open(bfv_kit, pack(agg), site="c", took_part=own).sites == COHORT
    bfv_kit.site_mode("c").site(rc, "c").submit(_xs()["b"], 40.0)  # a second, unsent upload
    assert own[5].digest != agg["uploads"][2][3]
    with pytest.raises(SecureFLError):
        _open(bfv_kit, pack(agg), site="c", took_part=own)


def test_a_site_refuses_headers_of_sites_outside_its_rounds_cohort(bfv_kit: Kit) -> None:
    """The server told c the cohort was a, b, c, yet the sum c is handed lists d as well."""
    _, agg = _round4(bfv_kit)
    sent = bfv_kit.site_mode("c").took_part[5]
    assert sent.cohort == COHORT4
    assert _open(bfv_kit, pack(agg), site="c", took_part={5: sent})
    told_c = OwnUpload(sent.round_digest, sent.digest, COHORT)
    with pytest.raises(SecureFLError):
        _open(bfv_kit, pack(agg), site="c", took_part={5: told_c})


def test_a_cheating_server_can_substitute_the_sum_within_the_feasibility_bound(
    bfv_kit: Kit, ckks_kit: Kit
) -> None:
    """The LIMIT of he mode's checks: the sum is the server's word; the headers are not.

    Every genuine header of a, b, c is kept, and the server (with the public
    context only) sends as the sum a's upload alone, or a + a + b. Site c took
    part, its own upload is listed, every count and weight checks out, the sum
    lies within n·clip: c accepts, and in the first case decrypts a's update
    alone. No check can see this without the individual ciphertexts, which no
    site may receive (all share the secret key). This is the trust he mode
    already places in the server: one that colludes with any one site reads
    every update anyway (threat_models/he.md). Use ``mask`` when that is not
    acceptable.
    """
    for kit in _kits(bfv_kit, ckks_kit):
        envs, agg = _round(kit, _rc())
        own = kit.site_mode("c").took_part
        alone = _open(kit, _with_sum(kit, agg, [envs["a"]]), site="c", took_part=own)
        assert alone.sites == COHORT
        # what c just read: a's update alone, to the scheme's precision
        assert np.max(np.abs(alone.weighted_sum / 50.0 - _xs()["a"])) < 1e-5
        twice = _open(
            kit, _with_sum(kit, agg, [envs["a"], envs["a"], envs["b"]]), site="c", took_part=own
        )
        expected = (2 * _xs()["a"] + _xs()["b"]).astype(np.float64) * 50.0
        assert np.max(np.abs(twice.weighted_sum - expected)) < 1e-3


def test_a_site_refuses_a_sum_counting_one_site_twice(bfv_kit: Kit, ckks_kit: Kit) -> None:
    """Headers {a, a, b}: a's signed header listed twice in c's place (a + a + b summed)."""
    for kit in _kits(bfv_kit, ckks_kit):
        envs, agg = _round(kit, _rc())
        headers = [agg["uploads"][0], *agg["uploads"][:2]]
        forged = _with_sum(kit, agg, [envs["a"], envs["a"], envs["b"]], uploads=headers)
        with pytest.raises(SecureFLError):
            _open(kit, forged)


def test_a_sum_below_the_rounds_min_sites_is_not_decrypted(bfv_kit: Kit, ckks_kit: Kit) -> None:
    """The round asked for three sites; the server releases the honest sum of two.

    ``open_aggregate`` (and the encrypted model's decoder) only asks for two
    distinct headers, whatever ``min_sites`` the round and the site's policy
    said. Handed the sum of {a, b}, site b subtracts its own update and reads
    a's exactly. Fix: a site refuses a sum of fewer than its own ``min_sites``
    summands, and never fewer than three (as ``mask``'s minimum cohort), since
    a two-site sum always reveals each summand to the other.
    """
    for kit in _kits(bfv_kit, ckks_kit):
        _, agg = _round(kit, _rc(min_sites=3))
        two = pack(dict(agg, uploads=agg["uploads"][:2]))  # the genuine uploads of a and b
        with pytest.raises(SecureFLError):
            opened = _open(kit, two, min_sites=2)  # never below 3, whatever a site configures
            own = _xs()["b"].astype(np.float64) * 0.5  # what b encrypted: (w/max_w)·Δ
            a = opened.weighted_sum / 100.0 - own
            pytest.fail(
                f"{kit.secret.preset.name}: site b opened a 2-site sum in a min_sites=3 round "
                f"and read a's update to {np.max(np.abs(a - _xs()['a'] * 0.5)):.2g}"
            )
        with pytest.raises(SecureFLError):  # a site configured for 4 refuses the sum of 3
            _open(kit, pack(agg), min_sites=4)
        assert _open(kit, pack(agg), min_sites=3).sites == COHORT


# -- a cheating site: poisoning beyond its clip ----------------------------------------


@pytest.mark.parametrize("scheme", ["bfv", "ckks"])
@pytest.mark.parametrize("factor", [2.5, 3.5])
def test_a_cheating_site_moves_the_mean_by_at_most_n_times_its_clip_share(
    scheme: str, factor: float, bfv_kit: Kit, ckks_kit: Kit
) -> None:
    """The bound that holds: one cheating site moves the mean by at most n·clip·max_weight/Σw.

    threat_models/he.md claimed "clip·max_weight/Σw". The sites' feasibility
    check bounds the *sum* by n·clip, so one cheating site (which holds the
    secret key and signs what it likes) may encrypt up to about n·clip per
    coordinate while the honest ones are small: 2.5·clip at n = 3 is
    accepted, and moves the mean beyond the old claim (so the docs now state
    n·clip·max_weight/Σw, as ``mask`` does for its masked inputs). 3.5·clip
    puts the sum beyond n·clip and must be refused.
    """
    kit = bfv_kit if scheme == "bfv" else ckks_kit
    secret, rc = kit.secret, _rc()
    clip = secret.clip
    xs = _xs()
    envs = {s: kit.site_mode(s).site(rc, s).submit(xs[s], 50.0)[0] for s in ("b", "c")}
    evil = np.full(D, factor * clip)
    parts = int(np.ceil(factor))
    values = (
        quantize(evil / parts, clip=clip, levels=secret.preset.quant_levels) * parts
        if scheme == "bfv"
        else evil
    )
    from test_he_aggregate import signed_update

    envs["a"] = signed_update(kit, "a", rc, encrypt_chunks(secret, values, workers=1), 100.0)
    server = kit.server_mode().server(rc)
    for env in envs.values():
        server.handle(env)
    result = server.result
    assert result is not None and result.survivors == COHORT, server.rejected
    assert isinstance(result.encrypted_sum, bytes)
    try:
        opened = _open(kit, result.encrypted_sum)
    except SecureFLError:
        assert factor > len(COHORT), "an aggregate within n·clip was refused"
        return  # refused: the protection holds
    honest = sum(xs[s].astype(np.float64) * 50.0 for s in ("b", "c"))
    shift = np.max(np.abs(opened.weighted_sum - honest)) / opened.total_weight
    old_claim = clip * rc.max_weight / opened.total_weight
    bound = len(COHORT) * old_claim
    assert shift <= bound * 1.01, (
        f"one site moved the mean by {shift:.3g}, {shift / bound:.2f}× the bound "
        f"n·clip·max_weight/Σw = {bound:.3g}"
    )
    assert shift > old_claim  # why the claim had to be corrected


# -- (a) one site's message and the server's memory ------------------------------------

_MEMORY_PROBE = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import tenseal.sealapi as sealapi
from conftest import craft_vector, make_kit, seal_bytes
from test_he_aggregate import signed_update
from securefl.aggregation.base import AggregateResult, RoundContext
from securefl.he import BFV_N4096, CKKS_N4096, SecretContext

scheme, copies, tmp, size = sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5])
preset = CKKS_N4096 if scheme == "ckks" else BFV_N4096
kit = make_kit(SecretContext.generate(preset, clip=0.1))
seal = kit.secret.tenseal.seal_context().data
ct = sealapi.Ciphertext(seal)
ct.resize(seal, seal.first_parms_id(), size)  # all zero: compresses to ~100 B
if scheme == "ckks":
    ct.scale = 2.0**40
raw = seal_bytes(ct, tmp)
chunk = craft_vector(scheme, [raw] * copies, [300], 2.0**40 if scheme == "ckks" else None)
rc = RoundContext(federation="f", round=1, cohort=("a", "b", "c"), dimension=300, max_weight=1.0)
server = kit.server_mode().server(rc)
env = signed_update(kit, "a", rc, [chunk], 1.0)
def peak_kib():  # this process's own high-water mark (ru_maxrss survives fork and exec)
    status = Path("/proc/self/status").read_text()
    return int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1])
before = peak_kib()
server.handle(env)
after = peak_kib()
print(json.dumps({"payload": len(env.payload), "growth": (after - before) * 1024,
                  "rejected": sorted(server.rejected)}))
"""


@pytest.mark.parametrize(
    ("scheme", "size", "copies"), [("bfv", 16, 300), ("ckks", 16, 300), ("bfv", 2, 1000)]
)
def test_one_signed_upload_cannot_make_the_server_allocate_far_beyond_its_size(
    scheme: str, size: int, copies: int, tmp_path: Path
) -> None:
    """A cheating site packs 300 zero ciphertexts of size 16 into one chunk (~35 kB).

    TenSEAL deserializes every ciphertext of the vector (each decompresses
    from ~100 bytes to 512 kB) before the "one ciphertext of size 2" check
    runs: ~300 MB for 35 kB, linear in the count, so a few MB of upload
    exhausts the server's memory. Fix: read the TenSEAL protobuf and the SEAL
    header before deserializing (exactly one ciphertext field, its declared
    size) and refuse anything else unread. The third case packs 1000 zero
    ciphertexts of SEAL's normal size 2 (~130 MB once loaded), so that the
    count of ciphertexts is checked, not only the size of the first.
    """
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEMORY_PROBE,
            str(HERE),
            scheme,
            str(copies),
            str(tmp_path),
            str(size),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
        check=False,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert report["rejected"] == ["a"]
    budget = 32 * 2**20 + 4 * report["payload"]
    assert report["growth"] <= budget, (
        f"{report['payload']} bytes from one site grew the server by "
        f"{report['growth'] / 2**20:.0f} MiB"
    )


# -- a cheating server gives sites different rounds ------------------------------------


def test_a_sum_of_sites_given_different_round_starts_is_refused(
    bfv_kit: Kit, ckks_kit: Kit
) -> None:
    """The server sends site c another model (round start) than a and b, then sums all three.

    ``mask`` signs the round-start digest each site received and refuses a
    round whose signers disagree (Pasquini et al., CCS 2022). ``he`` ignores
    ``RoundContext.round_digest``: the upload signature does not cover it, so
    sites cannot see that the summands trained from different models (nor that
    the server forked the encrypted model's history per site), and
    docs/he.md's "all sites stay identical" rests on the server's honesty.
    Fix: bind ``round_digest`` into the signed update, carry it in the
    aggregate's headers, and refuse a sum whose headers disagree (or differ
    from the opening site's own).
    """
    same, other = bytes(range(32)), bytes(range(1, 33))
    for kit in _kits(bfv_kit, ckks_kit):
        xs = _xs()
        server = kit.server_mode().server(_rc())
        for s in COHORT:
            rc = dataclasses.replace(_rc(), round_digest=other if s == "c" else same)
            server.handle(kit.site_mode(s).site(rc, s).submit(xs[s], 50.0)[0])
        result = server.result
        assert result is not None and result.survivors == COHORT, server.rejected
        assert isinstance(result.encrypted_sum, bytes)
        with pytest.raises(SecureFLError):
            _open(kit, result.encrypted_sum)
        # all three given the same round start, but not the one the opening site was given
        agg = unpack(result.encrypted_sum)
        uploads = [[u[0], u[1], same, u[3], u[4]] for u in agg["uploads"]]
        assert all(u[2] == same for u in agg["uploads"][:2]) and agg["uploads"][2][2] == other
        server = kit.server_mode().server(_rc())
        for s in COHORT:
            rc = dataclasses.replace(_rc(), round_digest=same)
            server.handle(kit.site_mode(s).site(rc, s).submit(xs[s], 50.0)[0])
        assert server.result is not None and isinstance(server.result.encrypted_sum, bytes)
        own = kit.site_mode("c").took_part[5]
        assert own.round_digest == same
        assert _open(kit, server.result.encrypted_sum, site="c", took_part={5: own})
        told_other = OwnUpload(other, own.digest, own.cohort)
        with pytest.raises(SecureFLError):
            _open(kit, server.result.encrypted_sum, site="c", took_part={5: told_other})
        with pytest.raises(SecureFLError):  # relabelling c's round start breaks its signature
            _open(kit, pack(dict(agg, uploads=uploads)))


# -- the same through the encrypted global model a site actually runs -----------------


def _model_payload(kit: Kit, blob: bytes, weight: float, server_lr: float = 1.0) -> bytes:
    from securefl.config import StrategyConfig
    from securefl.runtime.encrypted_model import EncryptedAggregatesModel

    config = StrategyConfig(name="fedavg", server_lr=server_lr)
    model = EncryptedAggregatesModel(np.zeros(D, np.float32), config)
    model.apply(
        AggregateResult(total_weight=weight, survivors=COHORT, encrypted_sum=blob),
        make_strategy(config),
        1,
    )
    return model.payload()


def _decoder(kit: Kit) -> Any:
    """Site c's decoder, with c's own strategy (fedavg, server_lr 1) and min_sites."""
    from securefl.config import StrategyConfig
    from securefl.runtime.encrypted_model import EncryptedModelDecoder

    return EncryptedModelDecoder(
        kit.site_mode("c"),
        roster=kit.roster,
        federation=FEDERATION,
        strategy=StrategyConfig(name="fedavg", server_lr=1.0),
        min_sites=3,
    )


def test_the_encrypted_model_refuses_a_sum_that_leaves_out_its_own_upload(
    bfv_kit: Kit,
) -> None:
    """Site c's decoder is handed a's update alone under the headers of a, b, d.

    The runtime path of ``test_a_site_refuses_a_sum_that_leaves_out_its_own_upload``:
    had it applied it, c's model would be θ₀ + a's update alone, and c would
    train on, evaluate and report metrics of one other hospital's update.
    (A sum substituted under c's own header is not detectable:
    ``test_a_cheating_server_can_substitute_the_sum_within_the_feasibility_bound``.)
    """
    envs, agg = _round4(bfv_kit)
    without_c = [u for u in agg["uploads"] if u[0] != "c"]
    forged = _with_sum(bfv_kit, agg, [envs["a"]], uploads=without_c)
    assert np.all(_decoder(bfv_kit)(_model_payload(bfv_kit, pack(agg), 200.0), D) != 0)
    with pytest.raises(SecureFLError):
        theta = _decoder(bfv_kit)(_model_payload(bfv_kit, forged, 150.0), D)
        gap = np.max(np.abs(theta * 3 - _xs()["a"]))
        pytest.fail(f"site c applied a's lone update: 3·θ equals a's update to {gap:.2g}")


def test_the_server_cannot_choose_the_step_sites_apply(bfv_kit: Kit) -> None:
    """The strategy (name, server_lr, momentum) in the model payload is the server's word.

    A cheating server announces server_lr = 1e9: every site's model moves 1e9
    times the feasible mean, so the bound on poisoning and on a tampered sum
    (n·clip·max_weight/Σw per coordinate of the *mean*) bounds nothing in the
    model. Fix: the decoder takes the strategy from the site's own federation
    configuration and refuses a payload that announces another.
    """
    _, agg = _round(bfv_kit, _rc())
    honest = _decoder(bfv_kit)(_model_payload(bfv_kit, pack(agg), 150.0), D)
    assert np.max(np.abs(honest)) < 1.0
    with pytest.raises(SecureFLError):
        theta = _decoder(bfv_kit)(_model_payload(bfv_kit, pack(agg), 150.0, server_lr=1e9), D)
        pytest.fail(f"site applied a step of 1e9 × the mean: max |θ| = {np.max(np.abs(theta)):.3g}")


def test_a_server_cannot_scale_its_tampering_by_announcing_a_huge_max_weight(
    bfv_kit: Kit,
) -> None:
    """The server alone: announce max_weight = 1e6, then add a plaintext offset to the sum.

    A site's policy only asks ``max_weight`` ≥ its own example count, so every
    site accepts 1e6 and signs it. The server needs no key to add a plaintext
    to a BFV sum; an offset of 2.5·clip keeps the sum inside n·clip and the
    sites open it, but the mean is the normalized sum × max_weight / Σw: every
    coordinate moves by 2500 for updates of about 0.01 (and honest updates
    of (50/1e6)·Δ quantize to a few levels). The feasibility bound is only as
    tight as a ``max_weight`` the server chooses. Fix: ``max_weight`` is part
    of the federation configuration each site holds, and a site refuses a
    round that announces another.
    """
    from securefl.he import HESiteMode
    from securefl.runtime._policy import SitePolicy, check_round
    from securefl.runtime.messages import RoundStart

    start = RoundStart(cohort=COHORT, model=b"", spec={}, max_weight=1e6, min_sites=3, run="0f")
    policy = SitePolicy(
        site="b", min_sites=3, local_epochs=1, dataset_size=50, max_weight=MAX_WEIGHT
    )
    with pytest.raises(SecureFLError):  # refused before anything is trained
        check_round(start, policy)
    assert check_round(dataclasses.replace(start, max_weight=MAX_WEIGHT), policy)
    kit = bfv_kit
    rc = dataclasses.replace(_rc(), max_weight=start.max_weight)
    with pytest.raises(SecureFLError):  # the he site pins its own max_weight as well
        kit.site_mode("b").site(rc, "b")
    # sites told 1e6 made a sum; a site configured with 100 refuses to open it
    told = {
        s: HESiteMode(
            kit.secret, site_id=s, signing_key=kit.keys[s], max_weight=1e6, processes=False
        )
        for s in COHORT
    }
    server = kit.server_mode().server(rc)
    for s in COHORT:
        server.handle(told[s].site(rc, s).submit(_xs()[s], 50.0)[0])
    assert server.result is not None and isinstance(server.result.encrypted_sum, bytes)
    with pytest.raises(SecureFLError):
        _open(kit, server.result.encrypted_sum)
