"""Each fault of issue 9 as its own test, playing the hostile party against a real server.

Every test runs uvicorn on 127.0.0.1 with mutual TLS, connects with the
certificate the adversary holds, and asserts what reached the driver (the
server transport's inbound queue), not only the status code.
"""

from __future__ import annotations

import os
import socket
import ssl
import types
from collections.abc import Callable

import httpx
import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from transport_pki import DAY, NOW, Authority

from securefl.errors import TransportError
from securefl.hazmat.sign import SigningKey
from securefl.transport.https_client import HttpsSiteTransport, RetryPolicy
from securefl.transport.https_server import driver_gate
from securefl.transport.signed import seal
from securefl.wire import Envelope

FED = "fed"


def _env(
    sender: str,
    *,
    payload: bytes = b"update",
    round: int = 1,
    stage: str = "plain/update",
    federation: str = FED,
) -> Envelope:
    return Envelope(
        federation=federation,
        round=round,
        stage=stage,
        sender=sender,
        receiver="server",
        payload=payload,
    )


def _post(client: httpx.Client, frame: bytes) -> int | str:
    """The status code, or "handshake" when the TLS layer refused the connection."""
    try:
        return client.post("/v1/send", content=frame).status_code
    except httpx.TransportError:
        return "handshake"


def _refused(outcome: int | str) -> bool:
    return outcome == "handshake" or (isinstance(outcome, int) and outcome >= 400)


# -- who may connect ------------------------------------------------------------------


def test_no_client_certificate_is_refused(fed):
    outcome = _post(fed.raw(None), seal(_env("site-a"), fed.pki.sites["site-a"].identity))
    assert _refused(outcome)
    assert fed.inbound() == []


def test_certificate_from_another_ca_is_refused(pki, serve):
    rogue = pki.add_site("site-a", authority=Authority.make("rogue CA"), folder="rogue")
    fed = serve(pki)
    # even with site-a's stolen identity key, a certificate the federation CA did not issue fails
    outcome = _post(fed.raw(rogue), seal(_env("site-a"), pki.sites["site-a"].identity))
    assert _refused(outcome)
    assert fed.inbound() == []


def test_expired_certificate_is_refused(pki, serve):
    expired = pki.add_site("site-c", not_before=NOW - 30 * DAY, not_after=NOW - DAY)
    fed = serve(pki)  # pinned on the roster: only the validity period is wrong
    assert _refused(_post(fed.raw(expired), seal(_env("site-c"), expired.identity)))
    assert fed.inbound() == []


def test_peer_check_refuses_a_certificate_outside_its_validity_on_every_request(pki):
    """OpenSSL checks validity at the handshake; our check holds for a long-lived connection."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from securefl.transport._tls import PeerCheck, PeerRefused

    site = pki.sites["site-a"]
    der = site.cert.public_bytes(Encoding.DER)
    clock = [NOW]
    check = PeerCheck(
        ca=pki.server.ca_path, sites=pki.fingerprints(), crl=pki.crl_path, now=lambda: clock[0]
    )
    assert check.check(der) == "site-a"
    clock[0] = site.cert.not_valid_after_utc + DAY
    with pytest.raises(PeerRefused, match="validity"):
        check.check(der)
    clock[0] = site.cert.not_valid_before_utc - DAY
    with pytest.raises(PeerRefused, match="validity"):
        check.check(der)


def test_ca_certificate_used_as_a_leaf_is_refused(pki, serve):
    leaf_ca = pki.add_site("site-c", ca=True)  # pinned, clientAuth, but CA:TRUE
    fed = serve(pki)
    assert _refused(_post(fed.raw(leaf_ca), seal(_env("site-c"), leaf_ca.identity)))
    assert fed.inbound() == []


@pytest.mark.parametrize(
    "usage", [ExtendedKeyUsageOID.SERVER_AUTH, None], ids=["serverAuth", "none"]
)
def test_certificate_without_client_auth_is_refused(pki, serve, usage):
    wrong = pki.add_site("site-c", usage=usage)  # pinned on the roster, wrong usage
    fed = serve(pki)
    assert _refused(_post(fed.raw(wrong), seal(_env("site-c"), wrong.identity)))
    assert fed.inbound() == []


def test_name_not_on_the_roster_is_refused(pki, serve):
    stranger = pki.add_site("mallory", folder="mallory")  # a valid CA-issued certificate
    fed = serve(pki)
    assert _post(fed.raw(stranger), seal(_env("mallory"), stranger.identity)) == 403
    assert fed.inbound() == []
    # and a stranger cannot even wait for messages
    assert fed.raw(stranger).get("/v1/receive", params={"after": 0, "wait": 0}).status_code == 403


def test_certificate_not_the_one_the_roster_pins_is_refused(pki, serve):
    """A second certificate the CA issued for a roster name (not re-pinned) is refused."""
    twin = pki.add_site("site-a", folder="twin")
    fed = serve(pki)
    assert _post(fed.raw(twin), seal(_env("site-a"), pki.sites["site-a"].identity)) == 403
    assert fed.inbound() == []


def test_revocation_is_checked_on_every_request_of_one_connection(fed):
    site = fed.pki.sites["site-a"]
    client = fed.raw(site)
    first = client.post("/v1/send", content=seal(_env("site-a", payload=b"1"), site.identity))
    assert first.status_code == 202
    fed.pki.revoke(site)
    second = client.post("/v1/send", content=seal(_env("site-a", payload=b"2"), site.identity))
    # the same TLS connection (keep-alive): only the per-request check can refuse it
    addr = [r.extensions["network_stream"].get_extra_info("client_addr") for r in (first, second)]
    assert addr[0] == addr[1]
    assert second.status_code == 403
    assert [e.payload for e in fed.inbound()] == [b"1"]
    # the other site is unaffected
    other = fed.pki.sites["site-b"]
    assert _post(fed.raw(other), seal(_env("site-b"), other.identity)) == 202


# -- what a connected site may send ----------------------------------------------------


def test_sender_field_other_than_the_tls_name_is_refused(fed):
    a, b = fed.pki.sites["site-a"], fed.pki.sites["site-b"]
    # site-b's connection carries an envelope validly signed as site-a (a stolen key)
    assert _post(fed.raw(b), seal(_env("site-a"), a.identity)) == 403
    assert fed.inbound() == []


def test_bad_signature_is_refused(fed):
    a = fed.pki.sites["site-a"]
    client = fed.raw(a)
    assert (
        client.post("/v1/send", content=seal(_env("site-a"), SigningKey.generate())).status_code
        == 401
    )
    frame = bytearray(seal(_env("site-a", payload=b"honest update"), a.identity))
    at = bytes(frame).index(b"honest")
    frame[at] ^= 1  # tamper with the payload in flight
    assert client.post("/v1/send", content=bytes(frame)).status_code == 401
    assert fed.inbound() == []


def test_oversized_body_is_refused_before_it_is_read(pki, serve):
    fed = serve(pki, max_body=4096)
    a = pki.sites["site-a"]
    ctx = ssl.create_default_context(cafile=str(a.ca_path))
    ctx.load_cert_chain(str(a.cert_path), str(a.key_path))
    with socket.create_connection(("127.0.0.1", fed.server.port), timeout=20) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            # announce a gigabyte and send none of it: an answer proves nothing was read
            tls.sendall(
                b"POST /v1/send HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: application/octet-stream\r\n"
                b"Content-Length: 1000000000\r\n\r\n"
            )
            answer = tls.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")
    assert fed.inbound() == []


def test_oversized_chunked_body_is_counted_and_refused(pki, serve):
    fed = serve(pki, max_body=4096)
    a = pki.sites["site-a"]
    big = seal(_env("site-a", payload=os.urandom(8192)), a.identity)
    small = seal(_env("site-a", payload=b"fits"), a.identity)

    def chunked(data: bytes) -> Callable[[], object]:
        def gen():  # no Content-Length: httpx sends Transfer-Encoding: chunked
            for i in range(0, len(data), 1000):
                yield data[i : i + 1000]

        return gen

    client = fed.raw(a)
    assert client.post("/v1/send", content=chunked(big)()).status_code == 413
    assert client.post("/v1/send", content=chunked(small)()).status_code == 202
    assert [e.payload for e in fed.inbound()] == [b"fits"]


def test_malformed_msgpack_is_refused_and_the_server_keeps_serving(fed):
    a = fed.pki.sites["site-a"]
    client = fed.raw(a)
    good = seal(_env("site-a"), a.identity)
    for junk in (
        b"\xc1",
        b"\x84\xa1v\x01",
        os.urandom(300),
        good[:-10],
        good + b"\x00",
        b"\xdf\xff\xff\xff\xff",
    ):
        assert client.post("/v1/send", content=junk).status_code == 400
    assert client.post("/v1/send", content=good).status_code == 202
    assert [e.payload for e in fed.inbound()] == [b"update"]


# -- ids, retries and replays ------------------------------------------------------------


def test_retry_is_acknowledged_without_double_delivery(fed):
    a = fed.pki.sites["site-a"]
    frame = seal(_env("site-a"), a.identity)
    client = fed.raw(a)
    assert client.post("/v1/send", content=frame).status_code == 202
    assert client.post("/v1/send", content=frame).status_code == 200
    assert fed.raw(a).post("/v1/send", content=frame).status_code == 200  # a new connection
    assert len(fed.inbound()) == 1


def test_replay_of_an_id_with_other_bytes_is_refused(fed):
    a = fed.pki.sites["site-a"]
    eid = os.urandom(16)
    client = fed.raw(a)
    assert (
        client.post(
            "/v1/send", content=seal(_env("site-a", payload=b"first"), a.identity, envelope_id=eid)
        ).status_code
        == 202
    )
    other = seal(_env("site-a", payload=b"second"), a.identity, envelope_id=eid)
    assert client.post("/v1/send", content=other).status_code == 409
    assert [e.payload for e in fed.inbound()] == [b"first"]


def _driver(round: int, stage: str, open: bool = True) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        current_round=round,
        aggregator_stage=stage,
        stage=types.SimpleNamespace(value="round open" if open else "waiting for sites"),
    )


def test_envelope_for_a_later_round_is_refused_and_for_an_ended_one_dropped(pki, serve):
    """A later round than the open one is refused (409); a signed message of an ended
    round (a retry across the round's end or a server restart) is acknowledged (200)
    and never reaches the driver; a forged one is still refused by its signature."""
    driver = _driver(2, "collecting updates")
    fed = serve(pki, gate=driver_gate(driver))
    a, b = pki.sites["site-a"], pki.sites["site-b"]
    client = fed.raw(a)
    assert (
        client.post("/v1/send", content=seal(_env("site-a", round=1), a.identity)).status_code
        == 200
    )
    assert (
        client.post("/v1/send", content=seal(_env("site-a", round=1), b.identity)).status_code
        == 401
    )
    assert (
        client.post("/v1/send", content=seal(_env("site-a", round=3), a.identity)).status_code
        == 409
    )
    assert (
        client.post("/v1/send", content=seal(_env("site-a", round=2), a.identity)).status_code
        == 202
    )
    assert [e.round for e in fed.inbound()] == [2]


def test_envelope_for_a_wrong_stage_is_refused(pki, serve):
    driver = _driver(1, "mask/masked-input")
    fed = serve(pki, gate=driver_gate(driver))
    a = pki.sites["site-a"]
    client = fed.raw(a)
    late = seal(_env("site-a", stage="mask/advertise"), a.identity)
    assert client.post("/v1/send", content=late).status_code == 409
    for stage in ("mask/masked-input", "fed/report"):
        assert (
            client.post(
                "/v1/send", content=seal(_env("site-a", stage=stage), a.identity)
            ).status_code
            == 202
        )
    assert [e.stage for e in fed.inbound()] == ["mask/masked-input", "fed/report"]
    driver.stage.value = "waiting for sites"  # between rounds only hello and bye pass
    assert (  # round 1 has closed: a late input is acknowledged and dropped
        client.post(
            "/v1/send", content=seal(_env("site-a", stage="mask/masked-input"), a.identity)
        ).status_code
        == 200
    )
    assert (  # the next round is not open yet: refused
        client.post(
            "/v1/send",
            content=seal(_env("site-a", stage="mask/masked-input", round=2), a.identity),
        ).status_code
        == 409
    )
    assert (
        client.post(
            "/v1/send", content=seal(_env("site-a", stage="fed/hello", round=0), a.identity)
        ).status_code
        == 202
    )


def test_replay_from_an_earlier_round_has_no_effect(pki, serve):
    driver = _driver(1, "collecting updates")
    fed = serve(pki, gate=driver_gate(driver))
    a = pki.sites["site-a"]
    old = seal(_env("site-a", round=1), a.identity)
    assert fed.raw(a).post("/v1/send", content=old).status_code == 202
    assert len(fed.inbound()) == 1
    driver.current_round = 2
    # the captured bytes, sent again in round 2, are acknowledged and dropped
    assert fed.raw(a).post("/v1/send", content=old).status_code == 200
    assert fed.inbound() == []


# -- the site's side ---------------------------------------------------------------------


def test_site_retries_with_backoff_until_the_server_is_up_then_sends_once(pki, serve):
    fed = serve(pki, listen=False)  # bound, not listening yet: connections are refused
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 2:
            fed.server.start()

    site = fed.site("site-a", retry=RetryPolicy(attempts=5, base=0.01, cap=0.02), sleep=sleep)
    site.send(_env("site-a"))
    assert len(delays) == 2 and all(0 <= d <= 0.02 for d in delays)
    assert [e.payload for e in fed.inbound()] == [b"update"]


def test_resent_frame_after_a_lost_answer_is_delivered_once(fed):
    """The request arrived but its answer was lost: the site re-sends the same bytes."""
    site = fed.site("site-a")
    frame = seal(_env("site-a"), fed.pki.sites["site-a"].identity)
    site.send_frame(frame)
    site.send_frame(frame)
    assert len(fed.inbound()) == 1


def test_site_gives_up_with_a_clear_error_when_the_budget_is_spent(pki, fed):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # bound, never listening: connection refused
        delays: list[float] = []
        site = fed.site(
            "site-a", retry=RetryPolicy(attempts=4, base=0.01, cap=1.0), sleep=delays.append
        )
        site._client.base_url = httpx.URL(f"https://127.0.0.1:{dead}")  # the server went away
        with pytest.raises(TransportError, match=r"unreachable.*4 attempts"):
            site.send(_env("site-a"))
    assert len(delays) == 3
    assert all(0 <= d <= min(1.0, 0.01 * 2**k) for k, d in enumerate(delays))


def test_site_drops_messages_not_sealed_by_the_pinned_server_key(fed):
    site = fed.site("site-a")
    forged = Envelope(
        federation=FED,
        round=1,
        stage="fed/round-start",
        sender="server",
        receiver="site-a",
        payload=b"evil",
    )
    fed.transport._outboxes["site-a"].put(
        os.urandom(32), lambda: seal(forged, SigningKey.generate())
    )
    assert site.receive(timeout=0.3) is None
    honest = Envelope(
        federation=FED,
        round=1,
        stage="fed/round-start",
        sender="server",
        receiver="site-a",
        payload=b"ok",
    )
    fed.transport.send(honest)
    assert site.receive(timeout=5) == honest


def test_outbox_is_acknowledged_by_sequence_number(fed):
    a = fed.pki.sites["site-a"]
    for i in range(3):
        fed.transport.send(
            Envelope(
                federation=FED,
                round=1,
                stage="s",
                sender="server",
                receiver="site-a",
                payload=bytes([i]),
            )
        )
    client = fed.raw(a)
    from securefl.wire import unpack

    got = unpack(client.get("/v1/receive", params={"after": 0, "wait": 0}).content)["messages"]
    assert [seq for seq, _ in got] == [1, 2, 3]
    again = unpack(client.get("/v1/receive", params={"after": 2, "wait": 0}).content)["messages"]
    assert [seq for seq, _ in again] == [3]  # 1 and 2 acknowledged and dropped
    assert client.get("/v1/receive", params={"after": 3, "wait": 0}).status_code == 204
    assert client.get("/v1/receive", params={"after": 0, "wait": 31}).status_code == 400


def test_status_only_for_roster_certificates_or_the_token(pki, serve):
    stranger = pki.add_site("mallory", folder="mallory")
    fed = serve(pki)
    assert fed.raw(pki.sites["site-a"]).get("/status").json()["federation"] == FED
    assert fed.raw(stranger).get("/status").status_code == 403
    assert fed.raw(stranger).get("/").status_code == 403
    bearer = {"Authorization": f"Bearer {pki.status_token}"}
    assert fed.raw(stranger).get("/status", headers=bearer).status_code == 200
    page = fed.raw(stranger).get("/", headers=bearer)
    assert page.status_code == 200 and "http-equiv='refresh'" in page.text
    wrong = {"Authorization": "Bearer " + "x" * len(pki.status_token)}
    assert fed.raw(stranger).get("/status", headers=wrong).status_code == 403


def test_site_refuses_a_server_with_another_name_or_another_ca(fed, tmp_path):
    from cryptography.hazmat.primitives.serialization import Encoding

    a = fed.pki.sites["site-a"]
    rogue_ca = tmp_path / "rogue-ca.pem"
    rogue_ca.write_bytes(Authority.make("rogue").cert.public_bytes(Encoding.PEM))
    fast = RetryPolicy(attempts=2, base=0.001, cap=0.001)
    wrong_name = fed.site("site-a", retry=fast)
    wrong_name._server_name = "coordinator.localhost"  # the certificate names localhost
    with pytest.raises(TransportError, match="not the federation's server"):
        wrong_name.send(_env("site-a"))
    other = HttpsSiteTransport(
        name="site-a",
        server_url=fed.url,
        server_name="localhost",
        ca=rogue_ca,
        cert=a.cert_path,
        key=a.key_path,
        signing_key=a.identity,
        server_key=fed.pki.server.identity.public_bytes(),
        retry=fast,
    )
    fed.clients.append(other)
    with pytest.raises(TransportError, match="not the federation's server"):
        other.send(_env("site-a"))
    assert fed.inbound() == []
    fed.site("site-a").send(_env("site-a"))  # the right name and CA work
    assert len(fed.inbound()) == 1


def test_a_poll_for_a_sequence_this_server_never_issued_says_it_restarted(pki, serve):
    """A restarted server numbers each outbox afresh: a site still polling after its old
    sequence is told at once (410), instead of waiting for a message that never comes;
    polling from 0 (what the site does next, after its hello) is served as usual."""
    fed = serve(pki)
    client = fed.raw(pki.sites["site-a"])
    assert client.get("/v1/receive", params={"after": 5, "wait": 0}).status_code == 410
    assert client.get("/v1/receive", params={"after": 0, "wait": 0}).status_code == 204
