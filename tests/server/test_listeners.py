"""
Tests for L{dockserve.server.listeners}: which endpoint serves each C{-H},
where TLS goes, one bind per listener, and a listener that cannot bind
stopping start-up with one line that names its host.
"""

import io
import socket
from typing import Any, NoReturn

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from dockserve.server import hosts
from dockserve.server.limits import ConnectionLimit, mark_busy
from dockserve.server.listeners import (
    ListenerService,
    ListenFailed,
    endpoints_for,
)
from dockserve.server.tls import server_creator
from dockserve.server.unixsocket import SocketGroup, UNIXSocketEndpoint
from dockserve.tap import DaemonService, Options, _make_service
from tests.server.test_tls import PKI
from tests.tempdirs import temp_dir
from tests.test_tap import FakeReactor


def parse(text: str) -> hosts.HostDescription:
    return hosts.parse(text, default_unix="/run/dockserve.sock")


def factory() -> Factory:
    return Factory.forProtocol(Protocol)


class EndpointsForTests(SynchronousTestCase):
    """What each kind of host listens on, seen from the reactor."""

    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.creator = server_creator(PKI(temp_dir(self)).settings())

    def listen(
        self, text: str, *, tls: bool = False, fds: list[int] | None = None
    ) -> None:
        for endpoint in endpoints_for(
            parse(text),
            reactor=self.reactor,
            tls=self.creator if tls else None,
            group=SocketGroup(None),
            fds=fds or [],
        ):
            endpoint.listen(factory())

    def test_interfaces(self) -> None:
        """Every endpoint made, plain or under TLS, is a verified endpoint."""
        for text in ("tcp://127.0.0.1:2375", "unix:///tmp/x.sock", "tcp:2375", "fd://"):
            for tls in (None, self.creator):
                for endpoint in endpoints_for(
                    parse(text),
                    reactor=self.reactor,
                    tls=tls,
                    group=SocketGroup(None),
                    fds=[3],
                ):
                    self.assertTrue(verifyObject(IStreamServerEndpoint, endpoint))

    def test_tcp(self) -> None:
        """tcp://HOST:PORT binds that address and port, in plain HTTP."""
        self.listen("tcp://127.0.0.1:2375")
        [(port, served, _, interface)] = self.reactor.tcpServers
        self.assertEqual((port, interface), (2375, "127.0.0.1"))
        self.assertNotIsInstance(served, TLSMemoryBIOFactory)

    def test_localhost_and_ipv6(self) -> None:
        """localhost is 127.0.0.1 (as dockerd); [::1] binds IPv6."""
        self.listen("tcp://localhost:2375")
        self.listen("tcp://[::1]:2376")
        self.assertEqual(
            [(p, i) for p, _, _, i in self.reactor.tcpServers],
            [(2375, "127.0.0.1"), (2376, "::1")],
        )

    def test_tcp_under_tls(self) -> None:
        """Under --tls every TCP connection goes through TLS first."""
        self.listen("tcp://127.0.0.1:2376", tls=True)
        self.listen("tcp:2377:interface=127.0.0.1", tls=True)
        served = [f for _, f, _, _ in self.reactor.tcpServers]
        self.assertEqual(len(served), 2)
        for one in served:
            self.assertIsInstance(one, TLSMemoryBIOFactory)

    def test_limit_below_tls(self) -> None:
        """
        The connection limit is counted at the socket, below TLS: a refused
        connection costs no handshake.
        """
        limit = ConnectionLimit("tcp://127.0.0.1:2376", 1, Clock())
        for endpoint in endpoints_for(
            parse("tcp://127.0.0.1:2376"),
            reactor=self.reactor,
            tls=self.creator,
            group=SocketGroup(None),
            fds=[],
            limit=limit,
        ):
            endpoint.listen(factory())
        [(_, served, _, _)] = self.reactor.tcpServers
        self.assertNotIsInstance(served, TLSMemoryBIOFactory)
        self.assertIsInstance(served.wrappedFactory, TLSMemoryBIOFactory)
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        first = served.buildProtocol(address)
        self.assertIsNotNone(first)
        mark_busy(first, True)
        self.assertIsNone(served.buildProtocol(address))

    def test_unix_never_tls(self) -> None:
        """A unix socket is plain even under --tls, as dockerd's."""
        [endpoint] = endpoints_for(
            parse("unix:///tmp/x.sock"),
            reactor=self.reactor,
            tls=self.creator,
            group=SocketGroup(None),
            fds=[],
        )
        self.assertIsInstance(endpoint, UNIXSocketEndpoint)

    def test_unix_forms_careful(self) -> None:
        """
        Every unix form, with any strports keyword, is the careful endpoint
        (0660, the group) with its options; an option used to mean Twisted's
        own unix endpoint, with a 0666 socket.
        """
        for text, backlog, mode, lockfile in [
            ("unix:/tmp/x.sock:backlog=50", 50, 0o660, False),
            ("unix:/tmp/x.sock:lockfile=1", 128, 0o660, True),
            ("unix:path=/tmp/x.sock:mode=600", 128, 0o600, False),
            ("unix:///tmp/x.sock", 128, 0o660, False),
        ]:
            [endpoint] = endpoints_for(
                parse(text),
                reactor=self.reactor,
                tls=self.creator,
                group=SocketGroup(None),
                fds=[],
            )
            self.assertIsInstance(endpoint, UNIXSocketEndpoint, text)
            assert isinstance(endpoint, UNIXSocketEndpoint)
            self.assertEqual(
                (endpoint.backlog, endpoint.mode, endpoint.lockfile),
                (backlog, mode, lockfile),
                text,
            )

    def test_fd_each_socket(self) -> None:
        """fd:// serves each socket it was given, each through TLS if --tls."""
        fds = []
        for _ in range(2):
            one = socket.socket()
            one.bind(("127.0.0.1", 0))
            one.listen()
            # The endpoint closes the descriptor it was given once adopted.
            fds.append(one.detach())
        self.listen("fd://", tls=True, fds=fds)
        adopted = self.reactor.adoptedPorts
        self.assertEqual([fd for fd, _, _ in adopted], fds)
        for _, family, served in adopted:
            self.assertEqual(family, socket.AF_INET)
            self.assertIsInstance(served, TLSMemoryBIOFactory)

    def test_fd_unix_plain(self) -> None:
        """A passed unix socket stays plain HTTP under --tls, as -H unix://."""
        one = socket.socket(socket.AF_UNIX)
        one.bind(str(temp_dir(self) / "s"))
        one.listen()
        fd = one.detach()
        adopted_ports: list[tuple[int, int, object]] = []

        class UnixReactor(MemoryReactor):
            # MemoryReactor adopts only TCP sockets.
            def adoptStreamPort(self, fd: int, family: int, served: object) -> object:
                adopted_ports.append((fd, family, served))
                return object()

        self.reactor = UnixReactor()
        self.listen("fd://", tls=True, fds=[fd])
        [(adopted, family, served)] = adopted_ports
        self.assertEqual((adopted, family), (fd, socket.AF_UNIX))
        self.assertNotIsInstance(served, TLSMemoryBIOFactory)


class _Endpoint:
    """An endpoint that counts its binds, succeeding or failing as told."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.listens = 0
        self.ports: list[_Port] = []

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        del protocolFactory
        self.listens += 1
        if self.error is not None:
            return fail(self.error)
        port = _Port()
        self.ports.append(port)
        return succeed(port)  # type: ignore[arg-type]


class _Port:
    def __init__(self) -> None:
        self.stopped = False

    def stopListening(self) -> Deferred[None]:
        self.stopped = True
        return succeed(None)

    def getHost(self) -> str:
        return "somewhere"


class ListenerServiceTests(SynchronousTestCase):
    def test_binds_once(self) -> None:
        """
        Bound while privileged (before twistd drops root), not again when
        the service starts; stopping closes the port.
        """
        endpoint = _Endpoint()
        listener = ListenerService("tcp://127.0.0.1:2375", endpoint, factory())
        listener.privilegedStartService()
        listener.startService()
        self.assertEqual(endpoint.listens, 1)
        self.assertIs(listener.port, endpoint.ports[0])
        stopping = listener.stopService()
        self.assertIsNotNone(stopping)
        self.assertTrue(endpoint.ports[0].stopped)
        self.assertIsNone(listener.port)

    def test_failure_names_host(self) -> None:
        """A failed bind is L{ListenFailed} with the host and the OS's reason."""
        endpoint = _Endpoint(
            CannotListenError("127.0.0.1", 2375, OSError(98, "Address already in use"))
        )
        listener = ListenerService("tcp://127.0.0.1:2375", endpoint, factory())
        with self.assertRaises(ListenFailed) as caught:
            listener.privilegedStartService()
        self.assertEqual(
            str(caught.exception),
            "cannot listen on tcp://127.0.0.1:2375: Address already in use",
        )

    def test_real_port_in_use(self) -> None:
        """The same through a real TCP bind on a port something else holds."""
        from twisted.internet import reactor  # noqa: PLC0415

        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        host = parse(f"tcp://127.0.0.1:{port}")
        [endpoint] = endpoints_for(
            host, reactor=reactor, tls=None, group=SocketGroup(None), fds=[]
        )
        listener = ListenerService(host.text, endpoint, factory())
        with self.assertRaises(ListenFailed) as caught:
            listener.privilegedStartService()
        self.assertEqual(
            str(caught.exception),
            f"cannot listen on tcp://127.0.0.1:{port}: Address already in use",
        )


class _Exited(Exception):
    pass


class _BusyReactor(FakeReactor):
    """A memory reactor on which one TCP port is taken."""

    def __init__(self, busy: int) -> None:
        super().__init__()
        self.busy = busy

    def listenTCP(self, port: int, *args: Any, **kwargs: Any) -> Any:
        if port == self.busy:
            raise CannotListenError(
                "127.0.0.1", port, OSError(98, "Address already in use")
            )
        return super().listenTCP(port, *args, **kwargs)


class StartUpTests(SynchronousTestCase):
    """One listener failing stops the whole daemon with one line."""

    def test_one_line_and_exit(self) -> None:
        """A busy port: one line naming its host, exit 1, the bound listener closed."""
        directory = temp_dir(self)
        stderr = io.StringIO()
        options = Options(environ={}, stderr=stderr)
        options.parseOptions(
            [
                "-H", "tcp://127.0.0.1:2375",
                "-H", "tcp://127.0.0.1:2376",
                "--data-root", str(directory / "d"),
                "--exec-root", str(directory / "e"),
            ]
        )  # fmt: skip
        codes: list[int] = []

        def exit_process(code: int) -> NoReturn:
            codes.append(code)
            raise _Exited

        reactor = _BusyReactor(busy=2376)
        service = _make_service(options, reactor, exit_process=exit_process)
        self.assertIsInstance(service, DaemonService)
        with self.assertRaises(_Exited):
            service.privilegedStartService()
        self.assertEqual(codes, [1])
        self.assertEqual(
            stderr.getvalue(),
            "dockserve: cannot listen on tcp://127.0.0.1:2376:"
            " Address already in use\n",
        )
        # The listener that did bind is closed again before exiting.
        [(port, *_)] = reactor.tcpServers
        self.assertEqual(port, 2375)
        listeners = [s for s in service if isinstance(s, ListenerService)]
        self.assertIsNone(listeners[0].port)
