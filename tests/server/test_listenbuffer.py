"""
Tests for L{dockserve.server.listenbuffer}: connections accepted before
activation are held with their bytes, handed over in order once it fires, and
answered with a JSON 503 when held too long or when the daemon cannot start.
"""

import json

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, FirstError
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from dockserve.server.listenbuffer import (
    DRAIN_TIMEOUT,
    HELD_BYTES_LIMIT,
    ListenBufferEndpoint,
    failure_message,
    unavailable_response,
)


class Recorder(Protocol):
    """The real protocol: records what reaches it."""

    #: Pause the transport on data, as an HTTP channel does when pipelining.
    pause_on_data = False

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.made = False
        self.lost = False

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)
        if self.pause_on_data and isinstance(self.transport, StringTransport):
            self.transport.pauseProducing()

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: ARG002
        self.lost = True


class RecordingFactory(Factory):
    """Remembers every protocol it builds."""

    protocol = Recorder

    def __init__(self) -> None:
        self.built: list[Recorder] = []
        self.site_attribute = "reachable"

    def buildProtocol(self, addr: object) -> Recorder:  # noqa: ARG002
        proto = Recorder()
        self.built.append(proto)
        return proto


def parse_response(data: bytes) -> tuple[int, dict[str, str], dict[str, str]]:
    """Status, headers and JSON body of one raw HTTP/1.1 response."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return status, headers, json.loads(body)


class ListenBufferTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.activation: Deferred[None] = Deferred()
        self.real = RecordingFactory()
        endpoint = ListenBufferEndpoint(
            TCP4ServerEndpoint(self.reactor, 2375),
            self.activation,
            self.reactor,
            timeout=10,
        )
        endpoint.listen(self.real)
        # What the reactor would call for each accepted connection.
        self.factory = self.reactor.tcpServers[0][1]

    def connect(self) -> tuple[Protocol, StringTransport]:
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        transport.protocol = proto
        proto.makeConnection(transport)
        return proto, transport

    def test_listens_at_once(self) -> None:
        """The wrapped endpoint is listening before activation."""
        self.assertEqual(self.reactor.tcpServers[0][0], 2375)

    def test_held_until_activation(self) -> None:
        """
        A connection made before activation gets no protocol and no answer;
        after activation the real protocol receives, in order, what the
        client sent meanwhile, and then what it sends next.
        """
        proto, transport = self.connect()
        proto.dataReceived(b"GET /_ping HTTP/1.1\r\n")
        proto.dataReceived(b"Host: x\r\n\r\n")
        self.assertEqual(self.real.built, [])
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)

        self.activation.callback(None)
        [inner] = self.real.built
        self.assertTrue(inner.made)
        self.assertEqual(
            b"".join(inner.received), b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        self.assertIs(inner.transport, transport)
        # The transport now talks to the real protocol directly.
        self.assertIs(transport.protocol, inner)
        proto.dataReceived(b"more")
        self.assertEqual(inner.received[-1], b"more")

    def test_after_activation_straight_through(self) -> None:
        """Once activated, new connections get the real protocol directly."""
        self.activation.callback(None)
        proto, _ = self.connect()
        self.assertEqual(self.real.built, [proto])

    def test_timeout_503(self) -> None:
        """
        A connection held past the timeout gets a 503 whose body is the JSON
        error the docker CLI shows, and is closed; activation later does not
        revive it.
        """
        proto, transport = self.connect()
        proto.dataReceived(b"GET /_ping HTTP/1.1\r\n\r\n")
        self.reactor.advance(9.9)
        self.assertEqual(transport.value(), b"")
        self.reactor.advance(0.2)
        status, headers, body = parse_response(transport.value())
        self.assertEqual(status, 503)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertIn("did not become ready within 10 seconds", body["message"])
        self.assertTrue(transport.disconnecting)
        self.activation.callback(None)
        self.assertEqual(self.real.built, [])

    def test_timeout_503_to_head(self) -> None:
        """
        The docker CLI's first request is HEAD /_ping: its 503 has the same
        headers and no body, as HTTP requires.
        """
        proto, transport = self.connect()
        proto.dataReceived(b"HE")
        proto.dataReceived(b"AD /_ping HTTP/1.1\r\n\r\n")
        self.reactor.advance(10)
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 503 "), head)
        self.assertIn(b"Content-Type: application/json", head)
        self.assertEqual(body, b"")
        self.assertTrue(transport.disconnecting)

    def test_no_timer_left_after_activation(self) -> None:
        """Activation cancels the timeout: nothing is pending on the clock."""
        self.connect()
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        self.activation.callback(None)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_client_gone_while_held(self) -> None:
        """A client that leaves while held is forgotten: no protocol, no timer."""
        proto, _ = self.connect()
        proto.connectionLost(Failure(ConnectionError()))
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.activation.callback(None)
        self.assertEqual(self.real.built, [])

    def test_activation_failure(self) -> None:
        """
        When the daemon cannot start, held connections and later ones are
        answered with a 503 naming the reason, not left hanging.
        """
        _, transport = self.connect()
        self.activation.errback(RuntimeError("disk on fire"))
        self.failureResultOf(self.activation, RuntimeError)
        status, _, body = parse_response(transport.value())
        self.assertEqual(status, 503)
        self.assertEqual(body["message"], "the daemon failed to start: disk on fire")
        _, later = self.connect()
        self.assertEqual(parse_response(later.value())[0], 503)
        self.assertEqual(self.real.built, [])

    def test_big_upload_not_read_while_held(self) -> None:
        """
        A client sending more than HELD_BYTES_LIMIT while held is no longer
        read (its bytes wait in the kernel, not in our memory); after
        activation reading resumes and the real protocol gets every byte
        kept, in order.
        """
        proto, transport = self.connect()
        chunk = b"x" * (HELD_BYTES_LIMIT // 4)
        for _ in range(3):
            proto.dataReceived(chunk)
        self.assertEqual(transport.producerState, "producing")
        proto.dataReceived(b"y" * len(chunk))
        self.assertEqual(transport.producerState, "paused")
        self.activation.callback(None)
        self.assertEqual(transport.producerState, "producing")
        [inner] = self.real.built
        self.assertEqual(b"".join(inner.received), chunk * 3 + b"y" * len(chunk))

    def test_real_protocol_may_pause(self) -> None:
        """
        Reading resumes before the kept bytes are handed over, so a real
        protocol that pauses its transport on them (HTTP pipelining) stays
        paused.
        """

        proto, transport = self.connect()
        Recorder.pause_on_data = True
        self.addCleanup(setattr, Recorder, "pause_on_data", False)
        proto.dataReceived(b"z" * HELD_BYTES_LIMIT)
        self.activation.callback(None)
        self.assertEqual(transport.producerState, "paused")

    def test_stopped_while_held(self) -> None:
        """
        When the daemon stops before it was ready (its ports stop listening),
        held clients get a 503 saying so instead of an empty reply; the real
        factory is stopped as usual.
        """
        stopped: list[bool] = []
        self.real.doStop = lambda: stopped.append(True)  # type: ignore[method-assign]
        proto, transport = self.connect()
        proto.dataReceived(b"GET /_ping HTTP/1.1\r\n\r\n")
        self.factory.doStop()
        status, _, body = parse_response(transport.value())
        self.assertEqual(status, 503)
        self.assertIn("shutting down", body["message"])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(stopped, [True])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def shutdown_trigger(self) -> Deferred[None] | None:
        """Run what the reactor runs before shutdown (twistd's stop)."""
        [(trigger, args, kwargs)] = self.reactor.triggers["before"]["shutdown"]
        result: Deferred[None] | None = trigger(*args, **kwargs)
        return result

    def test_stop_answers_held(self) -> None:
        """
        A stop before activation answers each held client with a 503 and
        waits (the reactor sending it) until they are closed.
        """
        proto, transport = self.connect()
        proto.dataReceived(b"GET /_ping HTTP/1.1\r\n\r\n")
        drained = self.shutdown_trigger()
        assert drained is not None
        status, _, body = parse_response(transport.value())
        self.assertEqual(status, 503)
        self.assertEqual(
            body["message"], "the daemon is shutting down before it became ready"
        )
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(drained)
        proto.connectionLost(Failure(ConnectionError()))
        self.successResultOf(drained)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_does_not_wait_forever(self) -> None:
        """A client that never goes away delays the stop DRAIN_TIMEOUT at most."""
        self.connect()
        drained = self.shutdown_trigger()
        assert drained is not None
        self.reactor.advance(DRAIN_TIMEOUT)
        self.successResultOf(drained)

    def test_stop_nothing_held(self) -> None:
        """Nothing held (or already activated): the stop does not wait."""
        self.assertIsNone(self.shutdown_trigger())
        self.activation.callback(None)
        self.connect()
        self.assertIsNone(self.shutdown_trigger())

    def test_site_attributes_reachable(self) -> None:
        """The buffering factory passes attribute reads on to the real one."""
        self.assertEqual(self.factory.site_attribute, "reachable")

    def test_alpn_http11(self) -> None:
        """
        TLS asks the factory it wraps which protocols to offer over ALPN;
        with none, an ALPN-offering client (curl, urllib3 2) was refused
        with an internal-error alert.  A factory that says nothing gets
        C{http/1.1}, the only protocol the API speaks.
        """
        self.assertTrue(IProtocolNegotiationFactory.providedBy(self.factory))
        self.assertEqual(list(self.factory.acceptableProtocols()), [b"http/1.1"])

    def test_alpn_from_real_factory(self) -> None:
        """A real factory that negotiates (a Site) is asked instead."""

        @implementer(IProtocolNegotiationFactory)
        class Negotiating(RecordingFactory):
            def acceptableProtocols(self) -> list[bytes]:
                return [b"x/1"]

        reactor = MemoryReactorClock()
        ListenBufferEndpoint(
            TCP4ServerEndpoint(reactor, 2375), Deferred(), reactor
        ).listen(Negotiating())
        factory = reactor.tcpServers[0][1]
        self.assertEqual(list(factory.acceptableProtocols()), [b"x/1"])


class FailureMessageTests(SynchronousTestCase):
    def test_first_error_unwrapped(self) -> None:
        """
        The daemon restores its areas with gatherResults: the message is the
        failed area's error, not FirstError's repr with its traceback.
        """
        inner = Failure(ValueError("index.json: Expecting value"))
        wrapped = Failure(FirstError(inner, 0))
        self.assertEqual(failure_message(wrapped), "index.json: Expecting value")

    def test_empty_message(self) -> None:
        """An error without a message is named by its type."""
        self.assertEqual(failure_message(Failure(RuntimeError())), "RuntimeError")


class ResponseTests(SynchronousTestCase):
    def test_unavailable_response(self) -> None:
        """The 503 carries an exact Content-Length and closes the connection."""
        data = unavailable_response("wait")
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: %d" % len(body), head)
        self.assertIn(b"Connection: close", head)
        self.assertEqual(json.loads(body), {"message": "wait"})
        self.assertEqual(unavailable_response("wait", head=True), head + b"\r\n\r\n")
