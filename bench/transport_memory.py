"""Server memory in one mask round over HTTPS: peak growth against the bytes received.

Run ``python bench/transport_memory.py [--dimension 10000000]``. The server
(HTTPS transport and the mask server half, in this process) runs one SecAgg+
round with three sites (one child process, a thread per site, each with its
own client certificate). ``tracemalloc`` (which also counts NumPy's buffers)
measures the server process's peak memory above its level when the round
starts; issue 9 asks for under 4x the request bytes the server received.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "transport")]

from securefl.aggregation.base import RoundContext  # noqa: E402
from securefl.hazmat.sign import SigningKey  # noqa: E402
from securefl.secagg import MaskConfig, MaskServerMode, MaskSiteMode  # noqa: E402
from securefl.transport._tls import PeerCheck, server_context  # noqa: E402
from securefl.transport.https_client import HttpsSiteTransport  # noqa: E402
from securefl.transport.https_server import HttpsServerTransport, RunningServer, body_limit  # noqa: E402
from securefl.wire import Envelope  # noqa: E402

SITES = ("site-a", "site-b", "site-c")
FED = "bench"
DIGEST = hashlib.sha256(b"bench round start").digest()


def _ctx(dimension: int, digest: bytes) -> RoundContext:
    return RoundContext(
        federation=FED,
        round=1,
        cohort=SITES,
        dimension=dimension,
        max_weight=100.0,
        min_sites=3,
        round_digest=digest,
    )


def _identity(folder: Path) -> SigningKey:
    key = serialization.load_pem_private_key((folder / "identity.key.pem").read_bytes(), None)
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return SigningKey.from_private_bytes(raw)


def run_sites(root: Path, port: int, dimension: int) -> None:
    """Child process: three sites, one thread each."""
    roster = {s: _identity(root / s).public_bytes() for s in SITES}
    server_key = _identity(root / "server").public_bytes()
    errors: list[BaseException] = []

    def site(name: str) -> None:
        try:
            folder = root / name
            key = _identity(folder)
            t = HttpsSiteTransport(
                name=name,
                server_url=f"https://127.0.0.1:{port}",
                server_name="localhost",
                ca=folder / "ca.cert.pem",
                cert=folder / "tls.cert.pem",
                key=folder / "tls.key.pem",
                signing_key=key,
                server_key=server_key,
            )
            mode = MaskSiteMode(
                site_id=name,
                signing_key=key,
                roster=roster,
                state_path=folder / "mask.json",
                config=MaskConfig(clip=1.0),
            )
            agg = mode.site(_ctx(dimension, DIGEST), name)
            rng = np.random.default_rng(int.from_bytes(name.encode(), "big") % 2**32)
            for env in agg.submit(rng.uniform(-0.5, 0.5, dimension).astype(np.float32), 10.0):
                t.send(env)
            while True:
                env = t.receive(timeout=300)
                if env is None or env.stage == "bench/done":
                    break
                for reply in agg.handle(env):
                    t.send(reply)
            t.close()
        except BaseException as exc:  # reported by the parent through the exit code
            errors.append(exc)
            raise

    threads = [threading.Thread(target=site, args=(s,)) for s in SITES]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    sys.exit(1 if errors else 0)


@dataclass(frozen=True)
class Measurement:
    dimension: int
    received: int
    peak_growth: int
    survivors: int
    sites_exit_code: int
    seconds: float


def measure(dimension: int) -> Measurement:
    """One mask round with three sites; the server's peak memory growth and bytes received."""
    from transport_pki import Pki

    with tempfile.TemporaryDirectory() as tmp:
        pki = Pki.make(Path(tmp), sites=SITES)
        roster = {n: p.identity.public_bytes() for n, p in pki.sites.items()}
        transport = HttpsServerTransport(
            federation=FED,
            signing_key=pki.server.identity,
            site_keys=roster,
            peer_check=PeerCheck(ca=pki.server.ca_path, sites=pki.fingerprints(), crl=pki.crl_path),
            max_body=body_limit(dimension=dimension, mode="mask"),
        )
        ctx = server_context(
            cert=pki.server.cert_path, key=pki.server.key_path, ca=pki.server.ca_path
        )
        server = RunningServer(transport.app, ctx).start()
        try:
            agg = MaskServerMode(roster=roster, config=MaskConfig(clip=1.0)).server(
                _ctx(dimension, b"")
            )
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            started = time.perf_counter()
            child = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--dimension",
                    str(dimension),
                    "--child",
                    tmp,
                    str(server.port),
                ]
            )
            for env in agg.start():
                transport.send(env)
            while agg.result is None:
                env = transport.receive(timeout=600)
                if env is None:
                    child.kill()
                    raise SystemExit("no message from the sites in 600 s")
                for out in agg.handle(env):
                    transport.send(out)
            peak = tracemalloc.get_traced_memory()[1] - base
            tracemalloc.stop()
            for s in SITES:
                transport.send(
                    Envelope(
                        federation=FED,
                        round=1,
                        stage="bench/done",
                        sender="server",
                        receiver=s,
                        payload=b"",
                    )
                )
            code = child.wait(timeout=600)
            return Measurement(
                dimension=dimension,
                received=transport.bytes_received,
                peak_growth=peak,
                survivors=len(agg.result.survivors),
                sites_exit_code=code,
                seconds=time.perf_counter() - started,
            )
        finally:
            if tracemalloc.is_tracing():
                tracemalloc.stop()
            transport.close()
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dimension", type=int, default=10_000_000)
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "PORT"))
    args = parser.parse_args()
    if args.child:
        run_sites(Path(args.child[0]), int(args.child[1]), args.dimension)
        return
    m = measure(args.dimension)
    print(
        f"{'dimension':>12} {'sites':>5} {'received MB':>12} {'peak growth MB':>15} "
        f"{'ratio':>6} {'wall s':>7}"
    )
    print(
        f"{m.dimension:>12} {len(SITES):>5} {m.received / 1e6:>12.1f} "
        f"{m.peak_growth / 1e6:>15.1f} {m.peak_growth / m.received:>6.2f} {m.seconds:>7.1f}"
    )
    print(f"aggregate of {m.survivors} sites; sites exited with {m.sites_exit_code}")
    if m.sites_exit_code != 0 or m.peak_growth >= 4 * m.received:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
