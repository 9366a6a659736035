"""The server half with a cheating site: cases the mutation run of ``secagg/_server.py`` asked for.

See ``docs/mutation.md`` ("secagg/ modules").
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from secagg_driver import QUICK_D, Federation, edit_payload, quick_round, random_updates

from securefl.secagg import MaskConfig
from securefl.secagg import _messages as m
from securefl.wire import SERVER, Envelope


def test_a_site_dropped_for_a_forged_advert_is_recorded_with_a_reason(tmp_path: Path) -> None:
    """``MaskServer.rejected`` keeps, for the operator, why each site was dropped."""
    fed = Federation(tmp_path, 5, MaskConfig(clip=1.0))

    def forge(body: dict[str, Any]) -> None:
        body["sig"] = secrets.token_bytes(len(body["sig"]))

    run = quick_round(fed, edit_payload(m.ADVERTISE, forge, sender="site-04"))
    assert run.result is not None and "site-04" not in run.result.survivors
    assert set(run.server.rejected) == {"site-04"}
    reason = run.server.rejected["site-04"]
    assert isinstance(reason, str) and reason


def test_a_site_late_past_the_deadline_is_dropped_not_accused(tmp_path: Path) -> None:
    """Its share arrives after the server moved on: ignored, and not listed as a violation.

    ``rejected`` names sites that sent something malformed or invalid; a site
    that was merely slow must not be listed there, nor have its late message
    taken into the round.
    """
    fed = Federation(tmp_path, 5, MaskConfig(clip=1.0))
    ctx = fed.ctx(1, QUICK_D)
    server, sites = fed.server(ctx), fed.sites(ctx)
    updates = random_updates(fed.names, QUICK_D)
    outbox: list[Envelope] = []
    for s, half in sites.items():
        outbox += half.submit(updates[s], 1.0)
    held: Envelope | None = None
    while server.result is None:
        if not outbox:
            outbox += server.on_deadline()
            if held is not None:
                assert server.handle(held) == []  # the late share, after the deadline
                held = None
            continue
        env = outbox.pop(0)
        if env.receiver != SERVER:
            outbox += sites[env.receiver].handle(env)
        elif env.sender == "site-04" and env.stage == m.SHARE:
            held = env
        else:
            outbox += server.handle(env)
    assert "site-04" not in server.result.survivors
    assert server.rejected == {}
