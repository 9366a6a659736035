"""The pre-round key step, as the round driver and the Site see it.

Why a seam: in ``he`` mode neither the server's half nor a site's half can be
built before the keymaker site has made the keys and the server has relayed
them (:mod:`securefl.he._relay`). The driver and the Site only know these two
shapes; the he implementations live with the HE code and in
:mod:`securefl.modes`. Torch-free, like everything the server imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from securefl.wire import Envelope

if TYPE_CHECKING:
    from securefl.modes import SiteHalf

__all__ = ["PreRoundKeys", "PreRoundSiteKeys"]


class PreRoundKeys(Protocol):
    """A key step that must finish before round 1 (``he``: :class:`securefl.he.KeyRelay`)."""

    #: the envelope stages the step handles (sites' messages outside any round)
    stages: frozenset[str]

    @property
    def ready(self) -> bool:
        """Whether the mode can be built now."""

    @property
    def signed_public_context(self) -> bytes:
        """The material the mode is built from."""

    def handle(self, env: Envelope) -> list[Envelope]:
        """One of the step's messages; returns what to send."""

    def on_hello(self, site: str) -> list[Envelope]:
        """A site said hello; returns what it must receive before its first round."""


class PreRoundSiteKeys(Protocol):
    """A site's key step before its first round (``he``: :class:`securefl.modes.HESiteKeys`).

    ``hello`` gives what to send after hello and, if the site already has its
    half (the keymaker, which makes the keys), that half; ``handle`` turns the
    server's key message into the site's half.
    """

    stages: frozenset[str]

    def hello(self) -> tuple[list[Envelope], SiteHalf | None]:
        """Messages to send after hello, and the half if it is ready now."""

    def handle(self, env: Envelope) -> SiteHalf:
        """The site's half from the server's key message (refuses anything not authentic)."""
