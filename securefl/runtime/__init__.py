"""The round drivers (sans-IO: the server's and a site's), their I/O loops, and the Site API.

``Site`` and ``Round`` hold a torch model and are imported on first use: the
server's parts (driver, loop, global-model holders, state folder) import
without torch.
"""

from typing import TYPE_CHECKING

from securefl.runtime.global_model import (
    GlobalModel,
    ModelDecoder,
    PlainGlobalModel,
    decode_plain_model,
)
from securefl.runtime.keys import PreRoundKeys, PreRoundSiteKeys
from securefl.runtime.loop import run_server
from securefl.runtime.server import RoundSummary, ServerDriver, ServerStage
from securefl.runtime.server_state import ServerState
from securefl.runtime.site_driver import SiteDriver, SiteEvent, SiteStage

if TYPE_CHECKING:
    from securefl.runtime.site import Round, Site

__all__ = [
    "GlobalModel",
    "ModelDecoder",
    "PlainGlobalModel",
    "PreRoundKeys",
    "PreRoundSiteKeys",
    "Round",
    "RoundSummary",
    "ServerDriver",
    "ServerStage",
    "ServerState",
    "Site",
    "SiteDriver",
    "SiteEvent",
    "SiteStage",
    "decode_plain_model",
    "run_server",
]


def __getattr__(name: str) -> object:
    """``Site`` and ``Round``, imported with torch only when a site asks for them."""
    if name in ("Round", "Site"):
        from securefl.runtime import site

        return getattr(site, name)
    raise AttributeError(f"module 'securefl.runtime' has no attribute {name!r}")
