"""The server half with a cheating site: cases the mutation run of ``secagg/_server.py`` asked for.

See ``docs/mutation.md`` ("secagg/ modules").
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from secagg_driver import Federation, edit_payload, quick_round

from securefl.secagg import MaskConfig
from securefl.secagg import _messages as m


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
