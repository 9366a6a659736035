"""One round over loopback HTTPS against the memory transport: wall time and bytes per mode.

Run ``python bench/network.py`` (n = 10 sites, d = 1e6, modes plain, mask
and he, three repetitions) or ``--quick`` (d = 1e5, one repetition);
``--modes``, ``--sites``, ``--dimension`` and ``--repeat`` pick other cells.

Topology: over HTTPS the server is the real
:class:`~securefl.transport.https_server.HttpsServerTransport` under uvicorn
in this process (TLS 1.3, client certificates, every envelope sealed and
checked, body limits, envelope ids; the HTTP stack deployments run:
httptools and uvloop where installed, ``--http-stack h11`` for uvicorn's
pure-Python h11 on the asyncio loop), and each site its own process
(``--topology processes``, the default) or a thread of this process
(``--topology threads``), each with its own :class:`HttpsSiteTransport`
(httpx, its own client certificate, one kept-alive connection, long polls).
The memory column runs every party as a thread of this one process over
:class:`~securefl.transport.memory.MemoryHub`, in the same run.

One round, as the runtime runs it: the server sends every site the global
model (``GlobalModel.payload()``, the bytes a round start carries), each site
reads it, submits a fixed update of d values through the mode's site half and
answers the server's protocol messages; the server aggregates, moves the
global model (``apply``) and sends every site the new payload, which each
site reads (in ``he``: checks and decrypts the aggregate) and acknowledges.
The clock runs from the first model sent to the last acknowledgement. Keys,
certificates, HE contexts and the TLS connections (a signed hello per site)
are set up before it starts; each repetition is round 1 of a fresh
federation. The server side is numpy only: no torch in this process.

``CPU s`` is the CPU time of the round: this process's (every thread), plus
over HTTPS with site processes each site process's (``/proc``): it depends far
less than wall time on how busy the (shared) machine is. ``wire MB``
over HTTPS is what TCP carried (TLS records, HTTP, frames) in
both directions, read from the kernel (``TCP_INFO`` bytes acked and
received) on the server's sockets; over memory it is the envelope bytes
delivered. The ratios compare each mode with ``plain`` over the same
transport in the same run, and HTTPS with memory for the same mode.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "transport")]

from securefl import modes  # noqa: E402
from securefl.aggregation.base import RoundContext  # noqa: E402
from securefl.config import StrategyConfig  # noqa: E402
from securefl.hazmat.sign import SigningKey  # noqa: E402
from securefl.strategy import make_strategy  # noqa: E402
from securefl.transport._tls import (  # noqa: E402
    PEER_CERT_PROTOCOL,
    PeerCertProtocol,
    PeerCheck,
    server_context,
)
from securefl.transport.base import Transport  # noqa: E402
from securefl.transport.https_client import HttpsSiteTransport  # noqa: E402
from securefl.transport.https_server import (  # noqa: E402
    LOOP,
    HttpsServerTransport,
    RunningServer,
    body_limit,
)
from securefl.transport.memory import MemoryHub  # noqa: E402
from securefl.wire import SERVER, Envelope  # noqa: E402

FED = "bench"
MAX_WEIGHT = 100.0
START, DONE, ACK = "bench/start", "bench/done", "bench/ack"
HELLO, EXIT = "bench/hello", "bench/exit"
TIMEOUT = 600.0
# struct tcp_info (linux/tcp.h): tcpi_bytes_acked at 120, tcpi_bytes_received at 128 (Linux >= 4.2)
_TCP_INFO_BYTES = struct.Struct("=QQ")
_TCP_INFO_AT = 120


# -- bytes on the wire -------------------------------------------------------------------------


def _tcp_bytes(sock: Any) -> int:
    """Payload bytes TCP sent (acked) plus received on ``sock``, from the kernel."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < _TCP_INFO_AT + _TCP_INFO_BYTES.size:
        raise RuntimeError("this kernel's TCP_INFO has no byte counters")
    acked, received = _TCP_INFO_BYTES.unpack_from(info, _TCP_INFO_AT)
    return int(acked + received)


class WireMeter:
    """Counts TCP bytes on every connection the server accepts (open and closed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, Any] = {}
        self._closed = 0
        #: connections closed before their bytes could be read (reported with the table)
        self.lost = 0

    def protocol(self, base: type[Any]) -> type[Any]:
        """``base`` (a peer-certificate protocol) counting its connection's bytes."""
        meter = self

        class Counting(base):  # type: ignore[misc,valid-type]
            def connection_made(self, transport: Any) -> None:  # type: ignore[override]
                # a duplicate descriptor of the same TCP socket: still readable after the
                # loop closed its own (uvloop's socket object has no descriptor by then)
                raw = transport.get_extra_info("socket")
                self._sock = socket.socket(fileno=os.dup(raw.fileno()))
                with meter._lock:
                    meter._open[id(self)] = self._sock
                super().connection_made(transport)

            def timeout_keep_alive_handler(self) -> None:
                meter._count_closed(id(self))  # uvicorn closes an idle connection next
                super().timeout_keep_alive_handler()

            def connection_lost(self, exc: Exception | None) -> None:
                meter._count_closed(id(self))
                super().connection_lost(exc)

        return Counting

    def _count_closed(self, key: int) -> None:
        with self._lock:
            sock = self._open.pop(key, None)
            if sock is not None:
                try:
                    self._closed += _tcp_bytes(sock)
                except OSError:
                    self.lost += 1
                finally:
                    sock.close()

    def total(self) -> int:
        with self._lock:
            return self._closed + sum(_tcp_bytes(s) for s in self._open.values())


def _cpu(pids: list[int]) -> float:
    """CPU seconds the processes ``pids`` have run, all threads (``/proc/PID/task/*/schedstat``)."""
    total = 0
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                total += int(stat.read_text().split()[0])
            except (OSError, ValueError, IndexError):  # a thread that just ended
                pass
    return total / 1e9


# -- one federation ----------------------------------------------------------------------------


@dataclass
class Federation:
    """The halves of one mode for n sites, and each site's fixed update."""

    secure: str
    sites: tuple[str, ...]
    dimension: int
    server_half: modes.ServerHalf | None
    site_halves: dict[str, modes.SiteHalf]
    theta0: np.ndarray
    updates: dict[str, np.ndarray]
    weights: dict[str, float] = field(default_factory=dict)

    def context(self, digest: bytes) -> RoundContext:
        return RoundContext(
            federation=FED,
            round=1,
            cohort=self.sites,
            dimension=self.dimension,
            max_weight=MAX_WEIGHT,
            min_sites=len(self.sites),
            round_digest=digest,
        )


def build(
    secure: str,
    identity: dict[str, bytes],
    signing: dict[str, SigningKey],
    dimension: int,
    state: Path,
    he: Any,
) -> Federation:
    """The halves for the sites in ``signing`` (and the server's), outside the clock.

    ``identity`` is the roster (every site's and the server's public key);
    ``he`` the shared secret context or None. A site process passes only its
    own key and gets no server half. Data come from fixed seeds, so every
    process agrees on them.
    """
    sites = tuple(sorted(s for s in identity if s != SERVER))
    strategy = StrategyConfig()
    server_half = None
    if len(signing) == len(sites):
        public = None
        if secure == "he":
            public = he.signed_public_context(
                federation=FED, maker=sites[0], signing_key=signing[sites[0]]
            )
        server_half = modes.server_half(
            secure,
            identity_keys=identity,
            federation=FED,
            strategy=strategy,
            max_weight=MAX_WEIGHT,
            min_sites=len(sites),
            he_public_context=public,
            he_keymaker=sites[0],
        )
    halves = {}
    for s, key in signing.items():
        half = modes.site_half(
            secure,
            name=s,
            signing_key=key,
            identity_keys=identity,
            state_dir=state / s,
            federation=FED,
            strategy=strategy,
            max_weight=MAX_WEIGHT,
            min_sites=len(sites),
            he_secret_context=he,
        )
        if secure == "he":  # n sites share two cores here: no helper processes per site
            half.mode.workers = 1  # type: ignore[attr-defined]
        halves[s] = half
    theta0 = (np.random.default_rng(0).normal(size=dimension) * 0.1).astype(np.float32)
    updates = {  # benchmark data only
        s: np.clip(np.random.default_rng(i + 1).normal(size=dimension) * 0.01, -0.05, 0.05).astype(
            np.float32
        )
        for i, s in enumerate(sites)
    }
    return Federation(
        secure=secure,
        sites=sites,
        dimension=dimension,
        server_half=server_half,
        site_halves=halves,
        theta0=theta0,
        updates=updates,
        weights={s: 10.0 + i for i, s in enumerate(sites)},
    )


def _env(stage: str, sender: str, receiver: str, payload: bytes = b"") -> Envelope:
    return Envelope(
        federation=FED, round=1, stage=stage, sender=sender, receiver=receiver, payload=payload
    )


def site_loop(fed: Federation, name: str, t: Transport, errors: list[BaseException]) -> None:
    """One site's round: read the model, submit, answer the protocol, read the result."""
    try:
        half = fed.site_halves[name]
        agg = None
        while True:
            env = t.receive(timeout=TIMEOUT)
            if env is None:
                raise TimeoutError(f"{name}: no word from the server")
            if env.stage == START:
                half.decoder(env.payload, fed.dimension)
                ctx = fed.context(hashlib.sha256(env.payload).digest())
                agg = half.mode.site(ctx, name)
                for out in agg.submit(fed.updates[name], fed.weights[name]):
                    t.send(out)
            elif env.stage == DONE:
                half.decoder(env.payload, fed.dimension)
                t.send(_env(ACK, name, SERVER))
            elif env.stage == EXIT:  # after the byte count: the connection stays until then
                return
            else:
                assert agg is not None
                for out in agg.handle(env):
                    t.send(out)
    except BaseException as exc:  # reported by the caller
        errors.append(exc)


def server_round(fed: Federation, t: Transport) -> np.ndarray | None:
    """The server's round; returns the new plaintext model (None in he)."""
    half = fed.server_half
    assert half is not None and half.mode is not None
    model = half.global_model(fed.theta0)
    start = model.payload()
    for s in fed.sites:
        t.send(_env(START, SERVER, s, start))
    agg = half.mode.server(fed.context(b""))
    for out in agg.start():
        t.send(out)
    while agg.result is None:
        env = t.receive(timeout=TIMEOUT)
        if env is None:
            raise TimeoutError("no message from the sites")
        for out in agg.handle(env):
            t.send(out)
    if len(agg.result.survivors) != len(fed.sites):
        raise RuntimeError(f"only {len(agg.result.survivors)} sites survived")
    model.apply(agg.result, make_strategy(StrategyConfig()), 1)
    done = model.payload()
    for s in fed.sites:
        t.send(_env(DONE, SERVER, s, done))
    acks = 0
    while acks < len(fed.sites):
        env = t.receive(timeout=TIMEOUT)
        if env is None:
            raise TimeoutError("a site did not acknowledge the result")
        acks += env.stage == ACK
    return model.plaintext()


# -- the two transports ------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    seconds: float
    wire_bytes: int
    cpu_seconds: float


def _run(
    fed: Federation,
    server: Transport,
    site_ts: dict[str, Transport],
    wire: Callable[[], int],
    cpu: Callable[[], float] = time.process_time,
) -> Measurement:
    errors: list[BaseException] = []
    threads = [  # none when the sites are processes of their own
        threading.Thread(target=site_loop, args=(fed, s, t, errors), daemon=True)
        for s, t in site_ts.items()
    ]
    before, cpu_before = wire(), cpu()
    started = time.perf_counter()
    for th in threads:
        th.start()
    new = server_round(fed, server)
    seconds = time.perf_counter() - started
    used, cpu_used = wire() - before, cpu() - cpu_before
    for s in fed.sites:
        server.send(_env(EXIT, SERVER, s))
    for th in threads:
        th.join(timeout=TIMEOUT)
    if errors:
        raise errors[0]
    if new is not None:  # plain and mask: the model moved by the weighted mean of the updates
        total = sum(fed.weights.values())
        mean = sum(fed.weights[s] * fed.updates[s].astype(np.float64) for s in fed.sites) / total
        np.testing.assert_allclose(new, fed.theta0 + mean, atol=1e-3)
    return Measurement(seconds, used, cpu_used)


def run_memory(fed: Federation) -> Measurement:
    hub = MemoryHub()
    count = [0]
    lock = threading.Lock()

    def tap(data: bytes) -> None:
        with lock:
            count[0] += len(data)

    for party in (SERVER, *fed.sites):
        hub.tap(party, tap)
    server = hub.connect(SERVER)
    site_ts: dict[str, Transport] = {s: hub.connect(s) for s in fed.sites}
    try:
        return _run(fed, server, site_ts, lambda: count[0])
    finally:
        for t in (server, *site_ts.values()):
            t.close()


def _site_transport(pki: Any, name: str, port: int, limit: int) -> HttpsSiteTransport:
    p = pki.sites[name]
    return HttpsSiteTransport(
        name=name,
        server_url=f"https://127.0.0.1:{port}",
        server_name="localhost",
        ca=p.ca_path,
        cert=p.cert_path,
        key=p.key_path,
        signing_key=p.identity,
        server_key=pki.server.identity.public_bytes(),
        max_message_bytes=limit,
    )


def _limit(secure: str, dimension: int) -> int:
    if secure == "he":  # BFV N=4096: about 15 bytes per value on the wire
        return body_limit(dimension=dimension, mode="he", bytes_per_value=32.0)
    return body_limit(dimension=dimension, mode=secure)


#: the server's HTTP stack: (uvicorn protocol, event loop) by ``--http-stack``
STACKS: dict[str, tuple[type[Any], str]] = {
    "default": (PEER_CERT_PROTOCOL, LOOP),
    "h11": (PeerCertProtocol, "asyncio"),
}


def run_https(
    fed: Federation, pki: Any, run_dir: Path, processes: bool, stack: str = "default"
) -> Measurement:
    """One round over HTTPS; sites are threads here or (``processes``) one process each."""
    limit = _limit(fed.secure, fed.dimension)
    transport = HttpsServerTransport(
        federation=FED,
        signing_key=pki.server.identity,
        site_keys={s: pki.sites[s].identity.public_bytes() for s in fed.sites},
        peer_check=PeerCheck(ca=pki.server.ca_path, sites=pki.fingerprints(), crl=pki.crl_path),
        max_body=limit,
    )
    ctx = server_context(cert=pki.server.cert_path, key=pki.server.key_path, ca=pki.server.ca_path)
    meter = WireMeter()
    base, loop = STACKS[stack]
    server = RunningServer(transport.app, ctx, protocol=meter.protocol(base), loop=loop).start()
    site_ts: dict[str, Transport] = {}
    children: list[subprocess.Popen[bytes]] = []
    try:
        if processes:
            for s in fed.sites:
                children.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            str(run_dir),
                            fed.secure,
                            str(fed.dimension),
                            str(server.port),
                            s,
                        ]
                    )
                )
        else:
            for s in fed.sites:
                site_ts[s] = _site_transport(pki, s, server.port, limit)
                site_ts[s].send(_env(HELLO, s, SERVER))
        for _ in fed.sites:  # every site connected (TLS set up) before the clock starts
            if transport.receive(timeout=TIMEOUT) is None:
                raise TimeoutError("a site did not connect")
        pids = [child.pid for child in children]
        m = _run(fed, transport, site_ts, meter.total, lambda: time.process_time() + _cpu(pids))
        if meter.lost:
            print(f"  warning: {meter.lost} connection(s) closed uncounted", file=sys.stderr)
        for child in children:
            if child.wait(timeout=TIMEOUT) != 0:
                raise RuntimeError(f"a site process failed (exit code {child.returncode})")
        return m
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        for t in site_ts.values():
            t.close()
        transport.close()
        server.stop()


def child(run_dir: Path, secure: str, dimension: int, port: int, name: str) -> None:
    """A site process: its own key from its folder, the roster and he context from files."""
    from transport_pki import Party

    from securefl.transport._files import load_signing_key

    roster = {
        k: bytes.fromhex(v) for k, v in json.loads((run_dir / "roster.json").read_text()).items()
    }
    he = None
    if secure == "he":
        from securefl.he import SecretContext

        he = SecretContext.from_bytes((run_dir / "he.secret").read_bytes())
    folder = run_dir.parent / "pki" / name
    key = load_signing_key(folder / "identity.key.pem")
    fed = build(secure, roster, {name: key}, dimension, run_dir, he)
    party = Party(name=name, folder=folder, cert=None, identity=key)  # type: ignore[arg-type]
    t = HttpsSiteTransport(
        name=name,
        server_url=f"https://127.0.0.1:{port}",
        server_name="localhost",
        ca=party.ca_path,
        cert=party.cert_path,
        key=party.key_path,
        signing_key=key,
        server_key=roster[SERVER],
        max_message_bytes=_limit(secure, dimension),
    )
    t.send(_env(HELLO, name, SERVER))
    errors: list[BaseException] = []
    site_loop(fed, name, t, errors)
    t.close()
    if errors:
        raise errors[0]


# -- the table ---------------------------------------------------------------------------------


def _stats(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--dimension", type=float, default=1e6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default="plain,mask,he")
    parser.add_argument(
        "--topology",
        choices=("processes", "threads"),
        default="processes",
        help="HTTPS sites as one process each (default) or as threads of this process",
    )
    parser.add_argument(
        "--http-stack",
        choices=tuple(STACKS),
        default="default",
        help="the server's HTTP stack: what deployments run (default: httptools and uvloop "
        "where installed) or uvicorn's pure-Python h11 on the asyncio loop, for comparison",
    )
    parser.add_argument("--quick", action="store_true", help="d = 1e5, one repetition")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_dir, secure, dimension, port, name = args.child
        child(Path(run_dir), secure, int(dimension), int(port), name)
        return
    dimension = int(1e5 if args.quick else args.dimension)
    repeat = 1 if args.quick else args.repeat
    processes = args.topology == "processes"
    chosen = tuple(m.strip() for m in args.modes.split(","))
    sites = tuple(f"site-{i:02d}" for i in range(args.sites))
    he = None
    if "he" in chosen:
        from securefl.he import DEFAULT_PRESET, SecretContext

        he = SecretContext.generate(DEFAULT_PRESET)
    from transport_pki import Pki

    results: dict[tuple[str, str], list[Measurement]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        pki = Pki.make(Path(tmp) / "pki", sites=sites)
        signing = {s: pki.sites[s].identity for s in sites}
        roster = {
            **{s: k.public_bytes() for s, k in signing.items()},
            SERVER: pki.server.identity.public_bytes(),
        }
        for rep in range(repeat):
            for secure in chosen:
                for kind in ("memory", "https"):
                    run_dir = Path(tmp) / f"{secure}-{kind}-{rep}"
                    run_dir.mkdir()
                    fed = build(secure, roster, signing, dimension, run_dir, he)
                    if kind == "memory":
                        m = run_memory(fed)
                    else:
                        if processes:
                            (run_dir / "roster.json").write_text(
                                json.dumps({k: v.hex() for k, v in roster.items()})
                            )
                            if he is not None:  # bench only: the sites' shared secret context
                                secret = run_dir / "he.secret"
                                secret.write_bytes(he.to_bytes(include_secret_key=True))
                                os.chmod(secret, 0o600)
                        m = run_https(fed, pki, run_dir, processes, args.http_stack)
                    results.setdefault((secure, kind), []).append(m)
                    print(
                        f"  rep {rep + 1}/{repeat} {secure:5} {kind:6} {m.seconds:7.2f} s "
                        f"{m.wire_bytes / 1e6:9.1f} MB, CPU {m.cpu_seconds:5.2f} s",
                        file=sys.stderr,
                        flush=True,
                    )
    where = "one process per site" if processes else "sites as threads of the server's process"
    protocol, loop = STACKS[args.http_stack]
    print(
        f"\nOne round, n = {len(sites)} sites, d = {dimension:,}, {repeat} repetition(s); "
        f"memory: all parties threads of one process; https: {where}, server "
        f"{protocol.__name__} on the {loop} loop"
    )
    head = (
        f"{'mode':6} {'transport':9} {'wall s (mean ± sd)':>20} {'CPU s':>6} {'wire MB':>9} "
        f"{'time/plain':>10} {'bytes/plain':>11} {'https/memory':>12}"
    )
    print(head)
    print("-" * len(head))
    for secure in chosen:
        for kind in ("memory", "https"):
            ms = results[(secure, kind)]
            mean, sd = _stats([m.seconds for m in ms])
            wire = statistics.fmean(m.wire_bytes for m in ms)
            cpu = statistics.fmean(m.cpu_seconds for m in ms)
            row = f"{secure:6} {kind:9} {mean:12.2f} ± {sd:5.2f} {cpu:6.2f} {wire / 1e6:9.1f} "
            if ("plain", kind) in results:
                p = results[("plain", kind)]
                row += f"{mean / statistics.fmean(m.seconds for m in p):10.2f} "
                row += f"{wire / statistics.fmean(m.wire_bytes for m in p):11.2f} "
            else:
                row += f"{'':10} {'':11} "
            if kind == "https":
                mem = statistics.fmean(m.seconds for m in results[(secure, "memory")])
                row += f"{mean / mem:12.2f}"
            print(row)
    if ("mask", "https") in results and ("plain", "https") in results:
        ratio = statistics.fmean(m.seconds for m in results[("mask", "https")]) / statistics.fmean(
            m.seconds for m in results[("plain", "https")]
        )
        print(f"\ntarget: mask within 2x of plain over HTTPS: {ratio:.2f}x")
    if ("plain", "https") in results:
        ratio = statistics.fmean(m.seconds for m in results[("plain", "https")]) / statistics.fmean(
            m.seconds for m in results[("plain", "memory")]
        )
        print(f"target: HTTPS within 1.5x of memory for plain: {ratio:.2f}x")
        cpu_ratio = statistics.fmean(
            m.cpu_seconds for m in results[("plain", "https")]
        ) / statistics.fmean(m.cpu_seconds for m in results[("plain", "memory")])
        print(f"CPU seconds of the round, HTTPS over memory for plain: {cpu_ratio:.2f}x")


if __name__ == "__main__":
    main()
