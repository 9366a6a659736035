"""One contract for every transport; each implementation subclasses it.

``pair()`` gives two connected endpoints; the tests use their ``name``s, so
a transport whose endpoints have fixed roles (a site and the server over
HTTPS) passes the same contract as the symmetric memory transport.
"""

import abc
import threading

import pytest

from securefl.errors import TransportError
from securefl.transport import MemoryHub
from securefl.wire import Envelope

FEDERATION = "fed"


def _env(sender, receiver, payload=b"hi"):
    return Envelope(
        federation=FEDERATION, round=1, stage="s", sender=sender, receiver=receiver, payload=payload
    )


class TransportContract(abc.ABC):
    """Subclasses provide ``pair()`` -> two connected endpoints named 'a' and 'b'."""

    @abc.abstractmethod
    def pair(self):
        """Two connected endpoints (memory: 'a' and 'b'; https: a site and the server)."""

    def test_delivers_in_order(self):
        a, b = self.pair()
        for i in range(5):
            a.send(_env(a.name, b.name, bytes([i])))
        assert [b.receive(timeout=5).payload for _ in range(5)] == [bytes([i]) for i in range(5)]

    def test_delivers_in_order_the_other_way(self):
        a, b = self.pair()
        for i in range(5):
            b.send(_env(b.name, a.name, bytes([i])))
        assert [a.receive(timeout=5).payload for _ in range(5)] == [bytes([i]) for i in range(5)]

    def test_delivers_the_exact_envelope(self):
        a, b = self.pair()
        env = Envelope(
            federation=FEDERATION,
            round=7,
            stage="mask/share",
            sender=a.name,
            receiver=b.name,
            payload=bytes(range(256)) * 40,
        )
        a.send(env)
        assert b.receive(timeout=5) == env

    def test_receive_times_out_with_none(self):
        a, _ = self.pair()
        assert a.receive(timeout=0.01) is None

    def test_cannot_send_as_someone_else(self):
        a, b = self.pair()
        with pytest.raises(TransportError):
            a.send(_env(b.name, b.name))

    def test_unknown_receiver_fails(self):
        a, _ = self.pair()
        with pytest.raises(TransportError):
            a.send(_env(a.name, "nobody"))

    def test_closed_endpoint_refuses(self):
        a, b = self.pair()
        b.close()
        with pytest.raises(TransportError):
            a.send(_env(a.name, b.name))
        with pytest.raises(TransportError):
            b.receive(timeout=0.01)


class TestMemoryTransport(TransportContract):
    def pair(self):
        hub = MemoryHub()
        self.hub = hub
        return hub.connect("a"), hub.connect("b")

    def test_tap_sees_exact_bytes(self):
        a, _b = self.pair()
        seen = []
        self.hub.tap("b", seen.append)
        env = _env("a", "b", b"payload")
        a.send(env)
        assert seen == [env.to_bytes()]

    def test_quiescent_only_when_everyone_waits_and_nothing_is_queued(self):
        a, b = self.pair()
        assert not self.hub.quiescent("a")  # b is not waiting
        ready = threading.Event()
        got = []

        def wait():
            ready.set()
            got.append(b.receive(timeout=2))

        t = threading.Thread(target=wait)
        t.start()
        ready.wait()
        for _ in range(100):
            if self.hub.quiescent("a"):
                break
            threading.Event().wait(0.01)
        assert self.hub.quiescent("a")
        a.send(_env("a", "b"))
        t.join()
        assert got[0] is not None


class TestHttpsTransport(TransportContract):
    """A site ('a' = site-a) and the server over real mutual TLS on loopback."""

    @pytest.fixture(autouse=True)
    def _federation(self, fed):
        self.fed = fed

    def pair(self):
        return self.fed.site("site-a"), self.fed.transport

    def test_a_site_sends_only_to_the_server(self):
        a, _server = self.pair()
        with pytest.raises(TransportError):
            a.send(_env(a.name, "site-b"))
