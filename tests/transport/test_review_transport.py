"""Adversarial review of the HTTPS transport: attacks that the first fault tests did not mount.

Each test plays a hostile roster site, a revoked site or a hostile network
against a real uvicorn server on 127.0.0.1 and asserts the property, not a
message text.
"""

from __future__ import annotations

import math
import socket
import ssl
import threading
import time
import types

import httpx
import pytest

from securefl.transport.https_client import RetryPolicy
from securefl.transport.https_server import driver_gate
from securefl.transport.signed import seal
from securefl.wire import Envelope, pack

FED = "fed"


def _env(sender: str, *, stage: str, payload: bytes, round: int = 0) -> Envelope:
    return Envelope(
        federation=FED, round=round, stage=stage, sender=sender, receiver="server", payload=payload
    )


def _token(pki: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {pki.status_token}"}  # type: ignore[attr-defined]


def _wait_seen(fed: object, site: str) -> None:
    """Block until the server has run its peer check for ``site`` (a request got in)."""
    deadline = time.monotonic() + 10
    while fed.transport.status.snapshot()["sites"][site]["last_seen"] is None:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the request never reached the server"
        time.sleep(0.01)


# -- the status page ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_a_site_reporting_a_non_finite_epsilon_cannot_break_the_status_page(fed, value):
    """A roster site's report is the one input to the ε column; it must not take /status down."""
    a = fed.pki.sites["site-a"]
    report = pack({"metrics": {"epsilon": value}})
    frame = seal(_env("site-a", stage="fed/report", payload=report), a.identity)
    assert fed.raw(a).post("/v1/send", content=frame).status_code == 202
    reader = fed.raw(fed.pki.sites["site-b"])
    answer = reader.get("/status", headers=_token(fed.pki))
    assert answer.status_code == 200
    eps = answer.json()["sites"]["site-a"]["epsilon"]
    assert eps is None or math.isfinite(eps)
    assert reader.get("/", headers=_token(fed.pki)).status_code == 200


def test_a_site_cannot_write_the_stage_the_status_page_shows(pki, serve):
    driver = types.SimpleNamespace(
        current_round=0,
        aggregator_stage="collecting updates",
        stage=types.SimpleNamespace(value="round open"),
    )
    fed = serve(pki, gate=driver_gate(driver))
    a = pki.sites["site-a"]
    before = fed.raw(a).get("/status").json()["stage"]
    lie = "finished: every site aggregated"
    fed.raw(a).post("/v1/send", content=seal(_env("site-a", stage=lie, payload=b"x"), a.identity))
    assert fed.raw(pki.sites["site-b"]).get("/status").json()["stage"] == before


# -- revocation ---------------------------------------------------------------------------


def test_a_revoked_site_can_neither_poll_nor_read_the_status(fed):
    a = fed.pki.sites["site-a"]
    client = fed.raw(a)
    assert client.get("/v1/receive", params={"after": 0, "wait": 0}).status_code == 204
    assert client.get("/status").status_code == 200
    fed.pki.revoke(a)
    fed.transport.send(
        Envelope(federation=FED, round=1, stage="fed/round-start", sender="server",
                 receiver="site-a", payload=b"the model")
    )  # fmt: skip
    for path, params in (("/v1/receive", {"after": 0, "wait": 0}), ("/status", {}), ("/", {})):
        assert client.get(path, params=params).status_code == 403
    assert fed.transport._outboxes["site-a"].after(0) != []  # still queued, never handed out


def test_a_long_poll_open_when_the_site_is_revoked_delivers_nothing(fed):
    """A poll that passed the peer check before the revocation must not hand out what comes next."""
    a = fed.pki.sites["site-a"]
    client = fed.raw(a)
    got: list[httpx.Response] = []
    poll = threading.Thread(
        target=lambda: got.append(client.get("/v1/receive", params={"after": 0, "wait": 10}))
    )
    poll.start()
    _wait_seen(fed, "site-a")
    fed.pki.revoke(a)
    fed.transport.send(
        Envelope(federation=FED, round=1, stage="fed/round-start", sender="server",
                 receiver="site-a", payload=b"the next model")
    )  # fmt: skip
    poll.join(timeout=30)
    (answer,) = got
    assert answer.status_code != 200
    assert b"the next model" not in answer.content


# -- memory a single roster site can pin ----------------------------------------------------


def _announce(fed: object, party: object, size: int) -> ssl.SSLSocket:
    """A TLS connection that announces a ``size``-byte body and sends one byte of it."""
    ctx = ssl.create_default_context(cafile=str(party.ca_path))  # type: ignore[attr-defined]
    ctx.load_cert_chain(str(party.cert_path), str(party.key_path))  # type: ignore[attr-defined]
    raw = socket.create_connection(("127.0.0.1", fed.server.port), timeout=10)  # type: ignore[attr-defined]
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    tls.sendall(
        b"POST /v1/send HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/octet-stream\r\n"
        + f"Content-Length: {size}\r\n\r\n".encode()
        + b"\x84"
    )
    return tls


def _answer(sock: ssl.SSLSocket) -> bytes:
    sock.settimeout(10)
    try:
        return sock.recv(4096)
    except TimeoutError:
        return b"(no answer: the server still holds this announced body)"


def test_one_site_cannot_hold_many_announced_bodies_at_once(pki, serve):
    """Announcing the largest body on many connections without sending it must not pin memory.

    The server sizes its buffer from Content-Length; a site has one body in
    flight, the newest: a second announced body ends the read of the first
    (503), so announcing on many connections holds one buffer.
    """
    limit = 1 << 20
    fed = serve(pki, max_body=limit)
    a = pki.sites["site-a"]
    first = _announce(fed, a, limit)
    try:
        _wait_seen(fed, "site-a")
        time.sleep(0.2)  # let the first request reach its body read
        second = _announce(fed, a, limit)
        try:
            assert _answer(first).startswith(b"HTTP/1.1 503")  # its buffer is let go
        finally:
            second.close()
        # another site is not affected by site-a's bodies
        b = pki.sites["site-b"]
        frame = seal(_env("site-b", stage="fed/hello", payload=b"hi"), b.identity)
        assert fed.raw(b).post("/v1/send", content=frame).status_code == 202
    finally:
        first.close()
    assert [e.sender for e in fed.inbound()] == ["site-b"]


def test_an_upload_the_network_stalls_does_not_block_the_sites_retry(pki, serve):
    """The network swallows the rest of a body without closing the connection; the retry gets in."""
    fed = serve(pki)
    a = pki.sites["site-a"]
    stalled = _announce(fed, a, 4096)  # never completed, never closed
    try:
        _wait_seen(fed, "site-a")
        time.sleep(0.2)
        site = fed.site("site-a", retry=RetryPolicy(attempts=3, base=0.05, cap=0.1))
        site.send(_env("site-a", stage="fed/hello", payload=b"retry"))
        assert [e.payload for e in fed.inbound()] == [b"retry"]
    finally:
        stalled.close()


# -- the server the site talks to -----------------------------------------------------------


def test_a_site_refuses_a_ca_signed_server_certificate_the_roster_does_not_pin(pki, tmp_path):
    """A second serverAuth certificate for the server's name (not the pinned one) gets no upload."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from securefl.errors import TransportError
    from securefl.transport._tls import server_context
    from securefl.transport.https_client import HttpsSiteTransport, RetryPolicy
    from securefl.transport.https_server import HttpsServerTransport, RunningServer

    key, cert = pki.ca.issue(
        "localhost",
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    (tmp_path / "other.cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "other.key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    from securefl.transport._tls import PeerCheck

    impostor = HttpsServerTransport(
        federation=FED,
        signing_key=pki.server.identity,
        site_keys={n: p.identity.public_bytes() for n, p in pki.sites.items()},
        peer_check=PeerCheck(ca=pki.server.ca_path, sites=pki.fingerprints(), crl=pki.crl_path),
        max_body=1 << 20,
    )
    ctx = server_context(
        cert=tmp_path / "other.cert.pem", key=tmp_path / "other.key.pem", ca=pki.server.ca_path
    )
    a = pki.sites["site-a"]
    with RunningServer(impostor.app, ctx) as running:
        site = HttpsSiteTransport(
            name="site-a",
            server_url=f"https://127.0.0.1:{running.port}",
            server_name="localhost",
            ca=a.ca_path,
            cert=a.cert_path,
            key=a.key_path,
            signing_key=a.identity,
            server_key=pki.server.identity.public_bytes(),
            retry=RetryPolicy(attempts=3, base=0.001, cap=0.001),
            server_cert_sha256=pki.server.fingerprint,  # the roster's pin
        )
        try:
            with pytest.raises(TransportError, match="not the federation's server"):
                site.send(_env("site-a", stage="fed/hello", payload=b"my update"))
            assert impostor.receive(timeout=0.05) is None  # not a byte of it arrived
        finally:
            site.close()
            impostor.close()


def test_a_site_pinning_the_roster_server_certificate_talks_to_the_real_server(fed):
    site = fed.site("site-a", server_cert_sha256=fed.pki.server.fingerprint)
    site.send(_env("site-a", stage="fed/hello", payload=b"hi"))
    assert [e.payload for e in fed.inbound()] == [b"hi"]
    fed.transport.send(
        Envelope(federation=FED, round=1, stage="fed/round-start", sender="server",
                 receiver="site-a", payload=b"the model")
    )  # fmt: skip
    assert site.receive(timeout=5) is not None


# -- what a repeated small request makes the server hold ------------------------------------


def test_repeated_hellos_do_not_make_the_server_hold_a_copy_of_a_large_answer_each(fed):
    """A site says hello again and again and never polls; each hello is answered in full.

    This is what the HE key relay does (``KeyRelay.on_hello`` hands every hello
    its sealed bundle and the signed public context, megabytes). The outbox
    holds one copy of a message still waiting, however often the driver sends it.
    """
    a = fed.pki.sites["site-a"]
    bundle = Envelope(federation=FED, round=0, stage="he/bundle", sender="server",
                      receiver="site-a", payload=bytes(256 * 1024))  # fmt: skip
    client = fed.raw(a)
    for i in range(40):  # each hello its own id: every one is new to the server
        hello = seal(_env("site-a", stage="fed/hello", payload=b"%d" % i), a.identity)
        assert client.post("/v1/send", content=hello).status_code == 202
        env = fed.transport.receive(timeout=5)
        assert env is not None and env.stage == "fed/hello"
        fed.transport.send(bundle)  # the driver's answer to every hello
    held = fed.transport._outboxes["site-a"].after(0)
    assert sum(len(frame) for _, frame in held) < 2 * len(bundle.payload)
    # the site still gets its answer, once
    site = fed.site("site-a")
    assert site.receive(timeout=5) == bundle
    assert site.receive(timeout=0.2) is None
    # once acknowledged, the same message is delivered again when the driver sends it again
    fed.transport.send(bundle)
    assert site.receive(timeout=5) == bundle


def test_a_site_cannot_keep_many_long_polls_waiting(fed):
    """Many concurrent long polls of one site: a newer poll ends the older ones (204).

    Each waiting poll costs the server a wake-up every few milliseconds and,
    when a message comes, a copy of the whole outbox in its answer; only the
    newest poll of a site waits, so exactly one answer carries the message.
    """
    a = fed.pki.sites["site-a"]
    polls = 12
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def poll() -> None:
        with httpx.Client(base_url=fed.url, verify=_ctx(a), timeout=30, trust_env=False) as c:
            r = c.get("/v1/receive", params={"after": 0, "wait": 8})
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=poll) for _ in range(polls)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 4
    while len(answers) < polls - 1 and time.monotonic() < deadline:
        time.sleep(0.02)  # the older polls end as newer ones arrive
    fed.transport.send(
        Envelope(federation=FED, round=1, stage="fed/round-start", sender="server",
                 receiver="site-a", payload=b"the model")
    )  # fmt: skip
    for t in threads:
        t.join(timeout=30)
    assert len(answers) == polls
    delivered = [r for r in answers if r.status_code == 200]
    assert len(delivered) == 1
    assert all(r.status_code == 204 for r in answers if r not in delivered)


def _ctx(party: object) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(party.ca_path))  # type: ignore[attr-defined]
    ctx.load_cert_chain(str(party.cert_path), str(party.key_path))  # type: ignore[attr-defined]
    return ctx


# -- the revocation list the server reads --------------------------------------------------


def test_a_revocation_list_signed_by_another_key_refuses_everyone(fed):
    """Whoever swaps crl.pem for one of the CA's name but another key un-revokes no one.

    The list's signature is checked against the CA on every reload; a list
    that does not verify refuses every site (fail closed) until a good one is back.
    """
    from transport_pki import Authority

    a, b = fed.pki.sites["site-a"], fed.pki.sites["site-b"]
    fed.pki.revoke(a)
    assert fed.raw(a).get("/status").status_code == 403
    good = fed.pki.crl_path.read_bytes()
    forged = Authority.make()  # the same subject name as the federation CA, another key
    assert forged.cert.subject == fed.pki.ca.cert.subject
    fed.pki.crl_path.write_bytes(forged.crl([]) + b"\n")  # names no one: would un-revoke a
    frame = seal(_env("site-a", stage="fed/hello", payload=b"back"), a.identity)
    assert fed.raw(a).post("/v1/send", content=frame).status_code == 403
    assert fed.raw(b).get("/status").status_code == 403  # fail closed
    fed.pki.crl_path.write_bytes(good)
    assert fed.raw(b).get("/status").status_code == 200
    assert fed.raw(a).get("/status").status_code == 403
    assert fed.inbound() == []


# -- whose outbox ---------------------------------------------------------------------------


def test_a_site_reads_and_acknowledges_only_its_own_outbox(fed):
    """The outbox is chosen by the TLS name, never by a parameter: site-b cannot read or
    acknowledge (drop) what waits for site-a, whatever ``after`` it sends."""
    for_a = Envelope(federation=FED, round=1, stage="fed/round-start", sender="server",
                     receiver="site-a", payload=b"for a only")  # fmt: skip
    fed.transport.send(for_a)
    b = fed.raw(fed.pki.sites["site-b"])
    for after in (0, 1, 2**62):
        answer = b.get("/v1/receive", params={"after": after, "wait": 0})
        # site-b's own outbox: empty (204), or never issued that sequence (410)
        assert answer.status_code == (204 if after == 0 else 410)
        assert b"for a only" not in answer.content
    assert fed.site("site-a").receive(timeout=5) == for_a
