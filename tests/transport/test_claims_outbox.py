"""A roster site names another site's outbox in every way a request can: it still gets its own.

The outbox a ``/v1/receive`` reads and acknowledges is looked up by the
TLS name of the connection. A server that let a query parameter or a
header choose it would hand site-b what waits for site-a, and site-b's
``after`` would drop it from site-a's outbox for good.
"""

from __future__ import annotations

from securefl.wire import Envelope

FED = "fed"


def test_a_site_naming_another_sites_outbox_reads_and_drops_nothing_of_it(fed):
    for_a = Envelope(federation=FED, round=1, stage="fed/round-start", sender="server",
                     receiver="site-a", payload=b"for a only")  # fmt: skip
    fed.transport.send(for_a)
    b = fed.raw(fed.pki.sites["site-b"])
    for params in (
        {"site": "site-a", "after": 0, "wait": 0},
        {"name": "site-a", "after": 0, "wait": 0},
        {"site": "site-a", "after": 1, "wait": 0},  # would acknowledge (drop) a's message
    ):
        answer = b.get("/v1/receive", params=params, headers={"X-Site": "site-a"})
        assert b"for a only" not in answer.content, params
    # site-a still gets its message: nothing site-b sent acknowledged it
    assert fed.site("site-a").receive(timeout=5) == for_a
