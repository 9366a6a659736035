"""Provisioning a federation: a CA, certificates, identities, a signed roster, one kit per party.

``securefl provision FED.toml --out DIR`` calls :func:`provision`; a site that
keeps its keys at home runs :func:`make_site_request` and sends the request
(:class:`SiteRequest`); :func:`revoke` and :func:`renew` maintain the
federation afterwards. Every party loads its folder with :meth:`Kit.load`,
which is torch-free and verifies the roster (:class:`SignedRoster`) against
the kit's CA certificate.
"""

from __future__ import annotations

from securefl.provision.coordinator import ProvisionResult, provision, renew, revoke
from securefl.provision.kit import Kit
from securefl.provision.request import SiteRequest, make_site_request
from securefl.provision.roster import RosterServer, RosterSite, SignedRoster

__all__ = [
    "Kit",
    "ProvisionResult",
    "RosterServer",
    "RosterSite",
    "SignedRoster",
    "SiteRequest",
    "make_site_request",
    "provision",
    "renew",
    "revoke",
]
