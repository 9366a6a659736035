"""Deployed parties built from their kits: what ``securefl server`` and ``securefl client`` run.

Why a package of its own: the CLI stays a thin layer of options and
messages, and the same builders serve the CLI, the tests and
``simulate --transport https``. :mod:`securefl.deploy.server` never imports
torch (a coordinator machine has no GPU stack); :mod:`securefl.deploy.site`
does, since a site trains.
"""

from __future__ import annotations

__all__: list[str] = []
