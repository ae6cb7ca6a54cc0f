# -*- test-case-name: tests.server.test_listeners -*-
"""
One listening service per C{-H}: the endpoint for a host, and its service.

The endpoint stack for a host is, outermost first: the listen buffer, TLS
(for TCP, and activated TCP sockets, under C{--tls}), the connection limit,
then the socket.  So a held connection has already finished its handshake
and its 503 is encrypted like any other answer, and a connection the
listener has no room for is closed before any TLS work.
"""

import ipaddress
import socket
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    serverFromString,
)
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from dockserve.server.activation import AdoptedSocketEndpoint
from dockserve.server.hosts import HostDescription
from dockserve.server.limits import ConnectionLimit, LimitedEndpoint
from dockserve.server.tls import TLSServerEndpoint
from dockserve.server.unixsocket import SocketGroup, UNIXSocketEndpoint

_log = Logger()


class ListenFailed(Exception):
    """A listener could not bind; start-up stops with this one line."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"cannot listen on {host}: {reason}")
        self.host = host
        self.reason = reason


def _interface(host: str) -> tuple[str, bool]:
    """
    The address to bind for C{host}, and whether it is IPv6.

    A name is resolved once, at start-up, as dockerd does.
    """
    if host == "localhost":
        return "127.0.0.1", False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        resolved = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        family, _, _, _, sockaddr = resolved[0]
        return str(sockaddr[0]), family == socket.AF_INET6
    return str(address), address.version == 6


def endpoints_for(
    host: HostDescription,
    *,
    reactor: Any,
    tls: IOpenSSLServerConnectionCreator | None,
    group: SocketGroup,
    fds: list[int],
    backlog: int = 128,
    limit: ConnectionLimit | None = None,
) -> list[IStreamServerEndpoint]:
    """
    The endpoints that serve C{host}: one, or one per socket for C{fd://}.

    @param reactor: Provides C{IReactorTCP}, C{IReactorUNIX} and
        C{IReactorSocket}.
    @param tls: When given, TCP sockets (bound or passed) speak TLS with it;
        unix sockets, bound or passed, stay plain HTTP, as in dockerd.
    @param group: Owner group of unix socket files.
    @param fds: The activated descriptors C{fd://} serves.
    @param limit: The most connections the listener holds at once, counted
        at the socket (below TLS).
    """
    if host.scheme == "fd":
        # TLS for passed TCP sockets only: the endpoint sees the family.
        return [AdoptedSocketEndpoint(reactor, fd, tls, limit=limit) for fd in fds]
    endpoints = _socket_endpoints(host, reactor, group, backlog)
    if limit is not None:
        endpoints = [LimitedEndpoint(e, limit) for e in endpoints]
    if tls is not None and _speaks_our_tls(host):
        endpoints = [TLSServerEndpoint(e, tls) for e in endpoints]
    return endpoints


def _socket_endpoints(
    host: HostDescription, reactor: Any, group: SocketGroup, backlog: int
) -> list[IStreamServerEndpoint]:
    """The endpoints that bind C{host}'s sockets, before TLS or limits."""
    if host.scheme == "tcp":
        interface, v6 = _interface(host.host)
        tcp = TCP6ServerEndpoint if v6 else TCP4ServerEndpoint
        return [tcp(reactor, host.port, backlog=backlog, interface=interface)]
    if host.scheme == "unix":
        return [
            UNIXSocketEndpoint(
                reactor,
                host.path,
                group,
                host.backlog or backlog,
                host.mode,
                lockfile=host.lockfile,
            )
        ]
    return [serverFromString(reactor, host.endpoint)]  # type: ignore[no-untyped-call]


def _speaks_our_tls(host: HostDescription) -> bool:
    """
    Whether C{--tls} applies to C{host}: TCP listeners (and systemd's
    INET sockets) that do not do their own TLS (C{ssl:}); never unix.
    """
    if host.scheme == "tcp":
        return True
    if host.scheme != "strports" or host.encrypted:
        return False
    kind = host.endpoint.split(":", 1)[0]
    return host.is_tcp or (kind == "systemd" and "domain=INET" in host.endpoint)


class ListenerService(Service):
    """
    Listen on one endpoint while running; stop listening when stopped.

    Listening happens in C{privilegedStartService}, so that twistd binds
    before it drops privileges, and synchronous bind failures surface as
    L{ListenFailed} there.

    @param kind: What the log says listens: C{API}, C{metrics API}.
    """

    def __init__(
        self,
        host: str,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        *,
        kind: str = "API",
    ) -> None:
        self.host = host
        self.kind = kind
        self._endpoint = endpoint
        self._factory = factory
        self._port: IListeningPort | None = None
        self._listening: Deferred[IListeningPort] | None = None

    @property
    def port(self) -> IListeningPort | None:
        """The port, once listening."""
        return self._port

    def privilegedStartService(self) -> None:
        """Bind now, while twistd still has its privileges."""
        super().privilegedStartService()  # type: ignore[no-untyped-call]
        self._listen()

    def startService(self) -> None:
        """Bind, unless privilegedStartService already did."""
        super().startService()  # type: ignore[no-untyped-call]
        self._listen()

    def _listen(self) -> None:
        if self._listening is not None:
            return
        failures: list[Failure] = []
        self._listening = self._endpoint.listen(self._factory)
        self._listening.addCallbacks(self._listened, failures.append)
        if failures:
            raise ListenFailed(self.host, _reason(failures[0]))

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self._port = port
        _log.info(
            "{kind} listen on {host}",
            kind=self.kind,
            host=self.host,
            address=str(port.getHost()),
        )
        return port

    def stopService(self) -> Deferred[None] | None:
        """Stop listening; the Deferred fires once the port is closed."""
        super().stopService()  # type: ignore[no-untyped-call]
        self._listening = None
        port, self._port = self._port, None
        if port is None:
            return None
        return port.stopListening()


def _reason(failure: Failure) -> str:
    error = failure.value
    if isinstance(error, OSError) and error.strerror:
        return str(error.strerror) if not error.filename else str(error)
    text = str(error) or type(error).__name__
    # CannotListenError's text repeats the address; keep its reason.
    socket_error = getattr(error, "socketError", None)
    if socket_error is not None:
        return str(getattr(socket_error, "strerror", None) or socket_error)
    return text
