"""
Tests for L{dockserve.server.limits}: a request head must arrive within a
deadline however slowly its bytes dribble in, while quiet requests (a
hijacked attach, a wait, logs -f) are never cut; the soft open-file limit is
raised to the hard one; each listener takes a bounded number of connections.
"""

import resource

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from dockserve.server.limits import (
    HEAD_TIMEOUT,
    RESERVED_FILES,
    ConnectionLimit,
    HeadDeadlineChannel,
    LimitedEndpoint,
    connections_per_listener,
    mark_busy,
    raise_open_file_limit,
)

ADDRESS = IPv4Address("TCP", "127.0.0.1", 40000)


class _Pages(Resource):
    """C{/fast} answers at once; C{/slow} never answers (a quiet stream)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.slow: list[Request] = []

    def render_GET(self, request: Request) -> bytes | int:
        if request.path == b"/slow":
            self.slow.append(request)
            return NOT_DONE_YET
        return b"fast"


class HeadDeadlineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.pages = _Pages()
        self.site = Site(self.pages, reactor=self.clock)  # type: ignore[no-untyped-call]
        self.site.protocol = lambda: HeadDeadlineChannel(head_timeout=10)  # type: ignore[assignment,misc]
        self.transport = StringTransport()
        self.channel = self.site.buildProtocol(ADDRESS)
        assert self.channel is not None
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        assert self.channel is not None
        self.channel.dataReceived(data)

    def test_dribbled_head_closed(self) -> None:
        """
        A head that never completes is cut at the deadline even though a
        byte arrives every 3 s (each resets Twisted's idle timer).
        """
        self.send(b"GET /fast HTTP/1.1\r\n")
        for _ in range(3):
            self.clock.advance(3)
            self.send(b"X")
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.transport.value(), b"")

    def test_silent_connection_closed(self) -> None:
        """A connection that sends nothing at all is cut at the deadline too."""
        self.clock.advance(10)
        self.assertTrue(self.transport.disconnecting)

    def test_quiet_request_kept(self) -> None:
        """
        Once the head is in, the request may stay quiet for hours (a wait,
        logs -f, a hijacked attach): nothing cuts it.
        """
        self.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        self.clock.advance(6 * 3600)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(len(self.pages.slow), 1)

    def test_deadline_again_for_next_head(self) -> None:
        """
        On a kept-alive connection the next head has its own deadline from
        the moment the previous answer is done.
        """
        self.send(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"fast", self.transport.value())
        self.clock.advance(5)
        self.send(b"GET /fast HTTP/1.1\r\n")
        self.clock.advance(4.9)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(self.transport.disconnecting)

    def test_pipelined_quiet_request_kept(self) -> None:
        """
        A quiet request pipelined behind a quick one: its head was already
        in when the first finished, so it is not cut.
        """
        self.send(
            b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        self.assertEqual(len(self.pages.slow), 1)
        self.clock.advance(3600)
        self.assertFalse(self.transport.disconnecting)

    def test_no_timer_after_close(self) -> None:
        """A closed connection leaves no deadline behind."""
        assert self.channel is not None
        self.send(b"GET /fast HTTP/1.1\r\n")
        self.channel.connectionLost(Failure(ConnectionError()))
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.active()], [])

    def test_default(self) -> None:
        """The default deadline is a minute."""
        self.assertEqual(HEAD_TIMEOUT, 60.0)
        self.assertEqual(HeadDeadlineChannel().head_timeout, HEAD_TIMEOUT)


class OpenFileLimitTests(SynchronousTestCase):
    def test_raised_to_hard(self) -> None:
        """The soft limit goes up to the hard one, as Go's runtime does."""
        calls: list[tuple[int, int]] = []
        result = raise_open_file_limit(
            get=lambda _: (1024, 524288), set=lambda _, limits: calls.append(limits)
        )
        self.assertEqual(calls, [(524288, 524288)])
        self.assertEqual(result, (1024, 524288))

    def test_already_there(self) -> None:
        """Nothing to do when soft equals hard."""
        calls: list[tuple[int, int]] = []
        result = raise_open_file_limit(
            get=lambda _: (4096, 4096), set=lambda _, limits: calls.append(limits)
        )
        self.assertEqual((calls, result), ([], (4096, 4096)))

    def test_unlimited_hard_left(self) -> None:
        """An unlimited hard limit cannot be a soft one: left as it is."""
        calls: list[tuple[int, int]] = []
        inf = resource.RLIM_INFINITY
        result = raise_open_file_limit(
            get=lambda _: (1024, inf), set=lambda _, limits: calls.append(limits)
        )
        self.assertEqual((calls, result), ([], (1024, 1024)))

    def test_refused(self) -> None:
        """If the kernel refuses, the soft limit stays."""

        def refuse(_: int, __: tuple[int, int]) -> None:
            raise OSError(1, "Operation not permitted")

        result = raise_open_file_limit(get=lambda _: (1024, 8192), set=refuse)
        self.assertEqual(result, (1024, 1024))


class PerListenerTests(SynchronousTestCase):
    def test_share_of_files(self) -> None:
        """
        Listeners share half of the open files left after a reserve for the
        daemon's own (stores, conmon sockets, exec pipes), at most 4096
        each, at least 32.
        """
        self.assertEqual(
            connections_per_listener(1024, 1), (1024 - RESERVED_FILES) // 2
        )
        self.assertEqual(
            connections_per_listener(1024, 2), (1024 - RESERVED_FILES) // 4
        )
        self.assertEqual(connections_per_listener(1_048_576, 3), 4096)
        self.assertEqual(connections_per_listener(100, 4), 32)


class _Port:
    def stopListening(self) -> None:
        pass


class _Endpoint:
    def __init__(self) -> None:
        self.factory: IProtocolFactory | None = None

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        self.factory = factory
        return succeed(_Port())  # type: ignore[arg-type]


class ConnectionLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.limit = ConnectionLimit("tcp://127.0.0.1:2375", 2, self.clock)
        self.factory = self.listen(Factory.forProtocol(Protocol))

    def listen(self, factory: IProtocolFactory) -> IProtocolFactory:
        inner = _Endpoint()
        LimitedEndpoint(inner, self.limit).listen(factory)
        assert inner.factory is not None
        return inner.factory

    def connect(
        self, factory: IProtocolFactory | None = None
    ) -> tuple[Protocol | None, StringTransport]:
        proto = (factory or self.factory).buildProtocol(ADDRESS)
        transport = StringTransport()
        if proto is not None:
            proto.makeConnection(transport)
        return proto, transport  # type: ignore[return-value]

    def warnings(self) -> list[str]:
        return [
            formatEvent(e) for e in self.events if e.get("log_level") == LogLevel.warn
        ]

    def test_full_evicts_oldest_idle(self) -> None:
        """
        A full listener makes room for a new connection by closing the
        oldest one that is not in a request (a slow or idle client), and
        says so in the log.
        """
        _, first = self.connect()
        _, second = self.connect()
        third, _ = self.connect()
        self.assertIsNotNone(third)
        self.assertTrue(first.disconnecting)
        self.assertFalse(second.disconnecting)
        self.assertEqual(self.limit.open, 2)
        [line] = self.warnings()
        self.assertIn("tcp://127.0.0.1:2375 holds 2 connections", line)
        self.assertIn("closed 1", line)

    def test_full_of_requests_refuses(self) -> None:
        """
        When every connection is in a request (attached, waiting) nothing
        is closed: the new connection is refused (the port closes it).
        """
        connections = [self.connect() for _ in range(2)]
        for proto, _ in connections:
            mark_busy(proto, True)
        self.assertIsNone(self.connect()[0])
        self.assertFalse(any(t.disconnecting for _, t in connections))
        [line] = self.warnings()
        self.assertIn("refused 1", line)

    def test_idle_again_after_request(self) -> None:
        """A connection back between requests may be closed for room again."""
        (first, first_transport), _ = self.connect(), self.connect()
        mark_busy(first, True)
        mark_busy(first, False)
        self.connect()
        self.assertTrue(first_transport.disconnecting)

    def test_room_again_when_one_closes(self) -> None:
        """A closed connection frees its place."""
        first, _ = self.connect()
        self.connect()
        assert first is not None
        first.connectionLost(Failure(ConnectionError()))
        self.assertEqual(self.limit.open, 1)
        self.assertIsNotNone(self.connect()[0])
        self.assertEqual(self.warnings(), [])

    def test_logged_at_most_once_a_minute(self) -> None:
        """While full, the log line is repeated at most once a minute."""
        for _ in range(4):
            self.connect()
        self.assertEqual(len(self.warnings()), 1)
        self.clock.advance(30)
        self.connect()
        self.assertEqual(len(self.warnings()), 1)
        self.clock.advance(30)
        self.connect()
        warnings = self.warnings()
        self.assertEqual(len(warnings), 2)
        self.assertIn("closed 3", warnings[1])

    def test_http_requests_are_busy(self) -> None:
        """
        Through a real site: a connection whose request is in (a quiet
        stream) is kept; the one still sending its head is closed for room.
        """
        pages = _Pages()
        site = Site(pages, reactor=self.clock)  # type: ignore[no-untyped-call]
        site.protocol = HeadDeadlineChannel  # type: ignore[assignment,misc]
        factory = self.listen(site)
        streaming, streaming_transport = self.connect(factory)
        assert streaming is not None
        streaming.dataReceived(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        slow, slow_transport = self.connect(factory)
        assert slow is not None
        slow.dataReceived(b"GET /slow HTTP/1.1\r\n")
        self.assertIsNotNone(self.connect(factory)[0])
        self.assertTrue(slow_transport.disconnecting)
        self.assertFalse(streaming_transport.disconnecting)
        self.assertEqual(len(pages.slow), 1)

    def test_wrapped_protocol_is_reached(self) -> None:
        """Bytes and the transport pass through to the real protocol."""
        received: list[bytes] = []

        class Recorder(Protocol):
            def dataReceived(self, data: bytes) -> None:
                received.append(data)

        proto, _transport = self.connect(self.listen(Factory.forProtocol(Recorder)))
        assert proto is not None
        proto.dataReceived(b"hello")
        self.assertEqual(received, [b"hello"])

    def test_real_port(self) -> None:
        """Through a memory reactor's TCP endpoint, the limiting factory is used."""
        reactor = MemoryReactorClock()
        LimitedEndpoint(TCP4ServerEndpoint(reactor, 2375), self.limit).listen(
            Factory.forProtocol(Protocol)
        )
        [(_, factory, _, _)] = reactor.tcpServers
        self.assertIsNotNone(factory.buildProtocol(ADDRESS))
