"""Both HTTP stacks the server may run check every peer certificate the same way.

Deployments run uvicorn's httptools protocol on uvloop where they are
installed and fall back to h11 on asyncio; each is a protocol subclass that
hands the peer certificate to the app. A stack that lost it would refuse
everyone; one that passed the wrong one could admit a stranger. Each stack
available here serves a roster site and refuses a CA certificate used as a
leaf and a site certificate the roster does not pin.
"""

from __future__ import annotations

import pytest

from securefl.transport._tls import PEER_CERT_PROTOCOL, PeerCertProtocol
from securefl.transport.https_server import LOOP
from securefl.transport.signed import seal
from securefl.wire import SERVER, Envelope

STACKS = {"h11-asyncio": (PeerCertProtocol, "asyncio"), "deployed": (PEER_CERT_PROTOCOL, LOOP)}


def _env(sender: str) -> Envelope:
    return Envelope(
        federation="fed",  # the harness federation (conftest.FEDERATION)
        round=1,
        stage="plain/update",
        sender=sender,
        receiver=SERVER,
        payload=b"update",
    )


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_each_stack_admits_the_roster_site_and_refuses_other_certificates(pki, serve, stack):
    ca_leaf = pki.add_site("site-c", ca=True)  # pinned, clientAuth, but CA:TRUE
    fed = serve(pki, stack=STACKS[stack])
    a = pki.sites["site-a"]
    assert fed.raw(a).post("/v1/send", content=seal(_env("site-a"), a.identity)).status_code == 202
    refused = fed.raw(ca_leaf).post("/v1/send", content=seal(_env("site-c"), ca_leaf.identity))
    assert refused.status_code == 403
    assert [e.sender for e in fed.inbound()] == ["site-a"]
