"""A coordinator needs no GPU stack: everything the server runs imports without torch.

Each check runs in a fresh interpreter (this test process has torch loaded
already), imports the server's parts, builds what ``securefl server`` builds
(the driver, each mode's server half, the strategy, the global-model holder,
the run loop over a transport, the signed round log) and asserts torch (and
Opacus) never entered ``sys.modules``. TenSEAL is allowed: the he server adds
ciphertexts with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SERVER_PATH = textwrap.dedent(
    """
    import sys

    import numpy as np

    import securefl
    import securefl.aggregation.plain
    import securefl.cli
    import securefl.he
    import securefl.reports.server_log
    import securefl.secagg
    import securefl.wire
    from click.testing import CliRunner
    from securefl.config import RoundConfig, StrategyConfig
    from securefl.hazmat.sign import SigningKey
    from securefl.he import SecretContext
    from securefl.he import KeyRelay
    from securefl.modes import server_half
    from securefl.params import ParamSpec, load_params, params_hash, save_params
    from securefl.runtime import ServerDriver, run_server
    from securefl.strategy import make_strategy
    from securefl.transport.memory import MemoryHub

    keys = {n: SigningKey.generate() for n in ("site-a", "site-b", "site-c")}
    ids = {n: k.public_bytes() for n, k in keys.items()}
    ids["server"] = SigningKey.generate().public_bytes()
    spec = ParamSpec(names=("w",), shapes=((4,),), dtypes=("float32",))
    made = SecretContext.generate()
    public = made.signed_public_context(federation="f", maker="site-a", signing_key=keys["site-a"])
    for secure in ("plain", "mask", "he"):
        half = server_half(
            secure, identity_keys=ids, federation="f", strategy=StrategyConfig(),
            max_weight=100.0, min_sites=2, he_public_context=public if secure == "he" else None,
        )
        driver = ServerDriver(
            federation="f", mode=half.mode, strategy=make_strategy(StrategyConfig()),
            model=half.global_model(np.zeros(4, dtype=np.float32)), spec=spec,
            rounds=RoundConfig(max_rounds=1), max_weight=100.0,
        )
        driver.stop("checked")
        run_server(driver, MemoryHub().connect("server"), stage_timeout=1.0)
    # he before the keymaker's keys: the relay, then the mode built from what it receives
    waiting = server_half(
        "he", identity_keys=ids, federation="f", strategy=StrategyConfig(),
        max_weight=100.0, min_sites=2,
    )
    assert isinstance(waiting.keys, KeyRelay) and waiting.mode is None
    assert waiting.build_mode is not None and waiting.build_mode(public).name == "he"
    assert CliRunner().invoke(securefl.cli.cli, ["--help"]).exit_code == 0
    loaded = [m for m in ("torch", "opacus") if m in sys.modules]
    print("LOADED:" + ",".join(loaded))
    """
)


def _run(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_server_import_path_never_loads_torch():
    out = _run(SERVER_PATH)
    assert "LOADED:\n" in out, out


def test_the_check_goes_red_when_a_server_module_imports_torch():
    """The probe is real: the same script with torch pulled in by the path reports it."""
    out = _run("import securefl.runtime.site\n" + SERVER_PATH)
    assert "LOADED:torch" in out, out


def test_the_public_names_still_reach_the_torch_parts():
    """``securefl.params.flatten``, ``securefl.dp.make_private`` and ``securefl.runtime.Site``
    still import (lazily) under their usual names."""
    out = _run(
        "import sys\n"
        "from securefl.params import flatten, model_vector\n"
        "from securefl.dp import make_private, planned_event\n"
        "from securefl.runtime import Site, Round\n"
        "print('torch' in sys.modules)\n"
    )
    assert out.strip() == "True"
