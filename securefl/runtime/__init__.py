"""The round driver (sans-IO), its I/O loop, and the Site API."""

from securefl.runtime.global_model import GlobalModel, PlainGlobalModel, decode_plain_model
from securefl.runtime.loop import run_server
from securefl.runtime.server import RoundSummary, ServerDriver, ServerStage
from securefl.runtime.site import Round, Site

__all__ = [
    "GlobalModel",
    "PlainGlobalModel",
    "Round",
    "RoundSummary",
    "ServerDriver",
    "ServerStage",
    "Site",
    "decode_plain_model",
    "run_server",
]
