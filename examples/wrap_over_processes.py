"""The wrapping example over real processes: one server and three sites on 127.0.0.1.

Run it from the repository root:  python examples/wrap_over_processes.py [--secure mask]

What a deployment does, on one machine: provision a three-site federation
(one kit per party, a CA, a signed roster), start ``securefl server`` from
the server's kit, start ``securefl client --train
examples.wrap_existing_trainer:train`` from each site's kit (the ``train``
function of examples/wrap_existing_trainer.py, unchanged), wait for the
federation to end, print what each party said and audit the sites' signed
privacy records against the server's signed round log with ``securefl
audit``. Exits non-zero if any process fails or the audit finds a problem.
Every process is stopped by a timeout, so the example never hangs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITES = ("site-a", "site-b", "site-c")

FEDERATION = """\
[federation]
name = "wrap-demo"
secure = "{secure}"
[server]
hosts = ["localhost", "127.0.0.1"]
bind = "127.0.0.1"
[model]
features = 8
classes = 2
[dp]
epsilon = 2.0
batch_size = 32
[rounds]
max_rounds = {rounds}
min_sites = 3
max_weight = 1000
stage_timeout_seconds = 60
{sites}"""


def securefl(*args: str | Path) -> list[str]:
    """The command line of ``securefl ARGS`` with this interpreter."""
    return [sys.executable, "-m", "securefl", *map(str, args)]


def _env() -> dict[str, str]:
    """The children import this checkout's securefl and the examples package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _wait_for_url(ready: Path, server: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the server did not start; see its log above")
        time.sleep(0.1)
    return ready.read_text(encoding="utf-8").strip()


def run(workdir: Path, *, secure: str, rounds: int, timeout: float) -> int:
    """Provision, run the server and three sites, audit; return the exit code."""
    sites = "".join(f'[[sites]]\nname = "{name}"\n' for name in SITES)
    fed = workdir / "fed.toml"
    fed.write_text(FEDERATION.format(secure=secure, rounds=rounds, sites=sites), encoding="utf-8")
    kits = workdir / "kits"
    env = _env()
    subprocess.run(  # noqa: S603 - our own interpreter and arguments
        securefl("provision", fed, "--out", kits), check=True, env=env, timeout=timeout
    )
    ready = workdir / "server.url"
    server_log = (workdir / "server.log").open("wb")
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        securefl("server", "--kit", kits / "server", "--port", "0", "--ready-file", ready),
        stdout=server_log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    clients: dict[str, subprocess.Popen[bytes]] = {}
    try:
        url = _wait_for_url(ready, server, timeout)
        print(f"server listening on {url}")
        for name in SITES:
            clients[name] = subprocess.Popen(  # noqa: S603 - our own interpreter
                securefl(
                    "client",
                    "--kit",
                    kits / name,
                    "--server",
                    url,
                    "--train",
                    "examples.wrap_existing_trainer:train",
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,  # `--train` imports from the current directory, as `python -m` does
            )
        codes = {}
        for name, proc in clients.items():
            out, _ = proc.communicate(timeout=timeout)
            codes[name] = proc.returncode
            print(f"--- {name} (exit {proc.returncode})\n{out.decode(errors='replace').strip()}")
        codes["server"] = server.wait(timeout=timeout)
    finally:
        for proc in (*clients.values(), server):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        server_log.close()
    print(f"--- server (exit {codes.get('server')})")
    print((workdir / "server.log").read_text(encoding="utf-8", errors="replace").strip())
    if any(codes.values()):
        print(f"a process failed: {codes}")
        return 1
    state = kits / "server" / "state"
    audit = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        securefl(
            "audit",
            *(kits / name / "state" / "records" for name in SITES),
            "--roster",
            state / "roster.json",
            "--server-log",
            state / "server_log.jsonl",
        ),
        env=env,
        timeout=timeout,
        check=False,
    )
    return audit.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secure", choices=("mask", "plain", "he"), default="mask")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per process")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the kits here")
    args = parser.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        sys.exit(run(args.workdir, secure=args.secure, rounds=args.rounds, timeout=args.timeout))
    with tempfile.TemporaryDirectory(prefix="securefl-wrap-") as tmp:
        sys.exit(run(Path(tmp), secure=args.secure, rounds=args.rounds, timeout=args.timeout))


if __name__ == "__main__":
    main()
