# -*- test-case-name: tests.server.test_metrics -*-
"""
C{--metrics-addr HOST:PORT}: the listener that serves C{/metrics}.

As dockerd's: a TCP listener of its own (never one of the API's, which
may demand client certificates Prometheus does not have), plain HTTP, at
the address given; dockerd refuses an address without a host, and so does
this.  The metrics say nothing secret, so any address is allowed.

The exposition is C{prometheus_client}'s own Twisted resource; the
scrape-time metrics are read on the reactor thread first (L{Scrape}).
"""

import ipaddress
import socket
from collections.abc import Callable

from attrs import frozen
from prometheus_client import CollectorRegistry
from prometheus_client.twisted import MetricsResource

from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.web import http
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from dockserve.server import limits

#: The most connections the metrics listener holds at once: a Prometheus
#: server or two, and whoever curls it.
CONNECTIONS = 64

#: What the usage error suggests.
_EXAMPLE = "127.0.0.1:9323 for this machine only, 0.0.0.0:9323 for every interface"


class InvalidAddress(ValueError):
    """A C{--metrics-addr} that is not C{HOST:PORT}."""


@frozen
class MetricsAddress:
    """
    Where C{/metrics} is served.

    @ivar text: As given (C{127.0.0.1:9323}), for the log.
    @ivar interface: The address bound (a name resolved once, at start).
    @ivar port: The TCP port (0: any free one).
    @ivar v6: Whether C{interface} is IPv6.
    """

    text: str
    interface: str
    port: int
    v6: bool

    @property
    def loopback(self) -> bool:
        """Whether only this machine can reach it."""
        return ipaddress.ip_address(self.interface).is_loopback


def parse_address(
    text: str,
    resolve: Callable[[str], tuple[str, bool]] | None = None,
) -> MetricsAddress:
    """
    C{HOST:PORT} or C{[V6]:PORT}, as Go's C{net.SplitHostPort} reads it.

    @param resolve: A host name's address and whether it is IPv6 (tests).
    @raise InvalidAddress: With a message for the usage line.
    """
    host, colon, port_text = text.rpartition(":")
    if not colon:
        raise InvalidAddress(
            f"{text!r}: missing port in address: expected HOST:PORT ({_EXAMPLE})"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise InvalidAddress(
            f"{text!r}: too many colons in address: write an IPv6 address in"
            " brackets ([::1]:9323)"
        )
    if not host:
        # dockerd looks the empty host up and fails ("failed to lookup
        # address in host specification"); say what to write instead.
        raise InvalidAddress(f"{text!r}: no host: give one ({_EXAMPLE})")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise InvalidAddress(f"{text!r}: invalid port {port_text!r}")
    try:
        interface, v6 = (resolve or _resolve)(host)
    except OSError as e:
        raise InvalidAddress(f"{text!r}: cannot resolve {host!r}: {e}") from e
    return MetricsAddress(text, interface, int(port_text), v6)


def _resolve(host: str) -> tuple[str, bool]:
    """C{host}'s address, looked up once as dockerd does (C{localhost}: IPv4)."""
    if host == "localhost":
        return "127.0.0.1", False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        family, _, _, _, sockaddr = socket.getaddrinfo(
            host, None, type=socket.SOCK_STREAM
        )[0]
        return str(sockaddr[0]), family == socket.AF_INET6
    return str(address), address.version == 6


class Scrape(Resource):
    """
    C{/metrics}: read the scrape-time metrics on the reactor thread, then
    let C{prometheus_client}'s resource render the registry (in a thread
    of the reactor's pool; it also answers OpenMetrics and gzip when the
    scraper asks).
    """

    isLeaf = True

    def __init__(
        self, registry: CollectorRegistry, refresh: Callable[[], None]
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._refresh = refresh
        self._exposition: IResource = MetricsResource(registry)  # type: ignore[no-untyped-call]

    def render(self, request: Request) -> bytes | int:
        """Refresh, then render as C{prometheus_client} does."""
        self._refresh()
        rendered: bytes | int = self._exposition.render(request)  # type: ignore[no-untyped-call]
        return rendered


class _QuietSite(Site):
    """No access log: a scrape every 15 s would fill it."""

    def log(self, request: http.Request) -> None:
        del request


def site(registry: CollectorRegistry, refresh: Callable[[], None]) -> Site:
    """The site of the metrics listener: C{/metrics} and nothing else."""
    root = Resource()  # type: ignore[no-untyped-call]
    root.putChild(b"metrics", Scrape(registry, refresh))
    served = _QuietSite(root)  # type: ignore[no-untyped-call]
    served.protocol = limits.channel_factory(limits.HEAD_TIMEOUT)  # type: ignore[assignment]
    served.displayTracebacks = False
    served.noisy = False
    return served


def endpoint(address: MetricsAddress, reactor: object) -> IStreamServerEndpoint:
    """
    The endpoint that binds C{address}, taking at most L{CONNECTIONS}: a
    listener on the network must not let a flood take the daemon's files.
    """
    tcp = TCP6ServerEndpoint if address.v6 else TCP4ServerEndpoint
    bound = tcp(reactor, address.port, interface=address.interface)
    limit = limits.ConnectionLimit(
        f"metrics {address.text}",
        CONNECTIONS,
        reactor,  # type: ignore[arg-type]
    )
    return limits.LimitedEndpoint(bound, limit)
