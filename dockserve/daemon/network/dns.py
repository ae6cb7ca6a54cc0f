# -*- test-case-name: tests.daemon.network.test_dns -*-
"""
The embedded DNS server at 127.0.0.11, as dockerd's resolver does it.

Each attached container gets a UDP and a TCP socket bound to
C{127.0.0.11:0} inside its own network namespace (made by a short-lived
thread that joined it: L{setns}), adopted by the daemon's reactor and served
by Twisted Names. A small nftables table inside the container's namespace
sends C{127.0.0.11:53} to those ports and makes the replies come from
C{:53} again, so the container's own port 53 stays free (dockerd:
C{libnetwork/resolver_unix.go}, with iptables).

Answers are made when the query comes, from the network service's
C{lookup}: a connect, disconnect or rename needs no push. Other names are
forwarded from the daemon's namespace, so a resolver on the host's
loopback (127.0.0.53) works as it does for dockerd. A container with no
upstream (only on internal networks) gets SERVFAIL, which is what dockerd's
C{ServeDNS} answers when it cannot forward.

Forwarding is dockerd's, not Twisted Names' client. Each query goes out
from a fresh socket (a source port the kernel picks at random), over the
protocol the container used. An upstream's SERVFAIL or REFUSED moves on to
the next server, and the upstream's reply goes back byte for byte with the
container's ID: NXDOMAIN keeps its SOA, a truncated UDP reply makes the
client retry over TCP. With C{twisted.names.client.Resolver} behind
Twisted's server, each forwarded name would open and close a logged UDP
port (four log lines), an upstream's SERVFAIL or REFUSED would reach the
client as NXDOMAIN (both are C{DomainError}s to the server), and the SOA
of an NXDOMAIN would be lost.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, ip_address
from typing import TYPE_CHECKING, Any, TypeAlias

from attrs import frozen

from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredLock,
    ensureDeferred,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.protocol import ClientFactory, connectionDone
from twisted.logger import Logger
from twisted.names import dns, server
from twisted.protocols.basic import Int16StringReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from dockserve.daemon.network import commands, setns

if TYPE_CHECKING:
    from pathlib import Path

    from twisted.internet.interfaces import IAddress, IDelayedCall

_log = Logger()

#: Where containers send their queries (their resolv.conf's nameserver).
RESOLVER_IP = "127.0.0.11"

#: The TTL of the names the daemon answers for (dockerd's C{respTTL}).
TTL = 600

#: The nftables table the daemon keeps inside each container's namespace.
NFT_TABLE = "dockserve_dns"

#: Seconds to wait for each upstream server, in rounds: every server for
#: 1 s, then every server for 3 s. That is 4 s in all for one server
#: (dockerd's C{extIOTimeout}), within the 5 s a glibc client waits before
#: it asks again.
FORWARD_TIMEOUT = (1.0, 3.0)

#: Upstream servers asked per query, the first ones (dockerd's C{maxExtDNS}):
#: at most 12 s before SERVFAIL when none answers.
MAX_UPSTREAMS = 3

#: Forwarded queries one container may have in flight (dockerd's
#: C{maxConcurrent}): each holds a socket of the daemon's.
FORWARD_CONCURRENCY = 1024

#: Seconds a TCP client may stay silent before it is hung up on (the idle
#: timeout of the miekg/dns server dockerd runs).
TCP_IDLE_TIMEOUT = 8.0

#: TCP connections one container may hold open at a time: each is a file
#: descriptor of the daemon's.
TCP_CONNECTIONS = 64

#: The TCP listening socket's backlog.
TCP_BACKLOG = 64

#: The largest DNS message (TCP's 16-bit length; a UDP datagram's payload).
MAX_MESSAGE = 65535

#: The three sections of a local answer: answers, authority, additional.
Records: TypeAlias = tuple[list[dns.RRHeader], list[dns.RRHeader], list[dns.RRHeader]]

#: An upstream server: address and port.
Server: TypeAlias = tuple[str, int]

#: A container's view of names: its ID and a name (lower case, no final
#: dot) -> the name's IPv4 addresses; None when the name is not the
#: networks' (forward it), [] when it is but has no address.
Lookup: TypeAlias = Callable[[str, str], list[str] | None]

#: A container's upstream servers (C{ip} or C{ip:port}, C{[v6]:port}).
Upstreams: TypeAlias = Callable[[str], list[str]]

#: A container's view of addresses: its ID and an IPv4 address -> the name
#: a PTR query for it answers (C{db.appnet}), or None.
Reverse: TypeAlias = Callable[[str, str], str | None]

#: (query message bytes, servers, over TCP) -> the reply's bytes: how
#: queries leave the daemon (L{Forwarder.forward}).
Forward: TypeAlias = Callable[[bytes, tuple[Server, ...], bool], Deferred[bytes]]

#: (server, message bytes, over TCP, timeout, is-it-the-reply) -> the
#: reply's bytes: one exchange with one server (L{exchange}).
Exchange: TypeAlias = Callable[
    [Server, bytes, bool, float, Callable[[bytes], bool]], Deferred[bytes]
]


class DNSSetupError(Exception):
    """The redirection of 127.0.0.11:53 could not be installed."""


class Detached(Exception):
    """The container was detached while it was being attached."""


class NoForwarding(Exception):
    """The container has no upstream servers: only internal networks."""


class ForwardFailed(Exception):
    """No upstream server answered (timeout, SERVFAIL, REFUSED, ...)."""


class ExchangeTimeout(Exception):
    """An upstream server did not answer in time."""


@frozen
class ResolverSockets:
    """
    The two sockets made inside a container's namespace, as file
    descriptors the reactor adopts.

    @ivar udp: The UDP socket's descriptor.
    @ivar tcp: The listening TCP socket's descriptor.
    @ivar udp_port: The port the kernel gave the UDP socket.
    @ivar tcp_port: The port the kernel gave the TCP socket.
    """

    udp: int
    tcp: int
    udp_port: int
    tcp_port: int


def bind_sockets() -> ResolverSockets:
    """
    Make the resolver's UDP and TCP sockets on C{127.0.0.11:0} in the
    calling thread's network namespace (which needs C{lo} up).

    Random ports, not 53, so a process in the container can still bind
    C{0.0.0.0:53}. Non-blocking, as the reactor adopts them.
    """
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.setblocking(False)
        tcp.setblocking(False)
        udp.bind((RESOLVER_IP, 0))
        tcp.bind((RESOLVER_IP, 0))
        tcp.listen(TCP_BACKLOG)
        udp_port = udp.getsockname()[1]
        tcp_port = tcp.getsockname()[1]
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return ResolverSockets(udp.detach(), tcp.detach(), udp_port, tcp_port)


def nat_rules(udp_port: int, tcp_port: int) -> str:
    """
    The nftables script that points C{127.0.0.11:53} at the resolver's
    ports inside a container's namespace.

    It replaces any table of the same name in one transaction (the leading
    empty table makes the delete valid when there is none), so a restored
    daemon re-points a running container with no moment without DNS.
    The SNAT mirrors dockerd's rule; replies of a DNATed flow are already
    rewritten back to C{:53} by conntrack.
    """
    return f"""\
table ip {NFT_TABLE} {{}}
delete table ip {NFT_TABLE}
table ip {NFT_TABLE} {{
    chain output {{
        type nat hook output priority -100; policy accept;
        ip daddr {RESOLVER_IP} udp dport 53 dnat to {RESOLVER_IP}:{udp_port}
        ip daddr {RESOLVER_IP} tcp dport 53 dnat to {RESOLVER_IP}:{tcp_port}
    }}
    chain postrouting {{
        type nat hook postrouting priority 100; policy accept;
        ip saddr {RESOLVER_IP} udp sport {udp_port} snat to :53
        ip saddr {RESOLVER_IP} tcp sport {tcp_port} snat to :53
    }}
}}
"""


def parse_server(text: str) -> Server | None:
    """
    An upstream server as C{--dns} or resolv.conf give it (C{1.2.3.4},
    C{::1}), or with a port (C{1.2.3.4:5353}, C{[::1]:5353}); None for
    anything else.
    """
    host, port = text.strip(), "53"
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
    elif host.count(":") == 1:
        host, port = host.split(":")
    try:
        address = ip_address(host)
        number = int(port)
    except ValueError:
        return None
    if not 0 < number < 65536:
        return None
    return str(address), number


def _plain_name(name: bytes) -> str | None:
    """
    A queried name as C{lookup} takes it: lower case (DNS names are, and
    dockerd's C{ResolveName} lowers them too), without the final dot; None
    for the root or a name that is not ASCII (never a container's).
    """
    try:
        text = name.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text.rstrip(".").lower() or None


def _reverse_address(name: str) -> str | None:
    """C{2.0.18.172.in-addr.arpa} -> C{172.18.0.2}; None for anything else."""
    labels = name.split(".")
    if len(labels) != 6 or labels[4:] != ["in-addr", "arpa"]:
        return None
    try:
        return str(IPv4Address(".".join(reversed(labels[:4]))))
    except ValueError:
        return None


def _a_record(name: dns.Name, address: str) -> dns.RRHeader:
    return dns.RRHeader(
        name=name.name,
        type=dns.A,
        ttl=TTL,
        payload=dns.Record_A(address, TTL),  # type: ignore[no-untyped-call]
    )


def _ptr_record(name: dns.Name, target: str) -> dns.RRHeader:
    return dns.RRHeader(
        name=name.name,
        type=dns.PTR,
        ttl=TTL,
        payload=dns.Record_PTR(target.rstrip("."), TTL),  # type: ignore[no-untyped-call]
    )


def reply_to(ident: int) -> Callable[[bytes], bool]:
    """
    Whether a message is the reply to the query with ID C{ident}: the ID
    and the QR bit. The socket is connected to the server, so only its
    datagrams arrive; the ID is random per query.
    """

    def check(data: bytes) -> bool:
        if len(data) < 12:
            return False
        got, flags = struct.unpack("!HH", data[:4])
        return got == ident and bool(flags & 0x8000)

    return check


def rcode_of(data: bytes) -> int:
    """The response code in a message's header."""
    return int(data[3] & 0x0F)


class ContainerResolver:
    """
    What one container's queries are answered with: the network service's
    names (L{local}), else its upstream servers (L{forward}).
    """

    def __init__(
        self,
        container_id: str,
        *,
        lookup: Lookup,
        upstreams: Upstreams,
        forward: Forward,
        reverse: Reverse | None = None,
    ) -> None:
        self.container_id = container_id
        self._lookup = lookup
        self._upstreams = upstreams
        self._forward = forward
        self._reverse = reverse
        self._in_flight = 0

    def local(self, query: dns.Query) -> Records | None:
        """
        The answer from the networks' names, or None when the query is to
        be forwarded (another name, another type, another class).

        @raise Exception: Whatever C{lookup} or C{reverse} raise.
        """
        name = _plain_name(query.name.name)
        if name is None or query.cls != dns.IN:
            return None
        if query.type == dns.A:
            addresses = self._lookup(self.container_id, name)
            if addresses is None:
                return None
            # Shuffled, as dockerd does: several containers under one alias
            # share the load.
            addresses = random.sample(addresses, len(addresses))
            return ([_a_record(query.name, a) for a in addresses], [], [])
        if query.type in {dns.AAAA, dns.MX}:
            # A network name with no IPv6 address (or mail exchanger) has
            # an empty answer: never ask upstream about it (dockerd's
            # ipv6Miss and implicit MX).
            if self._lookup(self.container_id, name) is None:
                return None
            return ([], [], [])
        if query.type == dns.PTR and self._reverse is not None:
            address = _reverse_address(name)
            target = address and self._reverse(self.container_id, address)
            if not target:
                return None
            return ([_ptr_record(query.name, target)], [], [])
        return None

    def forward(self, message: dns.Message, tcp: bool) -> Deferred[bytes]:
        """
        Send C{message} to the container's upstream servers (read now, so a
        change needs no push).

        @return: Fires with the reply's bytes (with the upstream's ID);
            fails with L{NoForwarding} or L{ForwardFailed}.
        """
        parsed = map(parse_server, self._upstreams(self.container_id))
        servers = tuple(server for server in parsed if server is not None)
        servers = servers[:MAX_UPSTREAMS]
        if not servers:
            return fail(NoForwarding(self.container_id))
        if self._in_flight >= FORWARD_CONCURRENCY:
            return fail(ForwardFailed(servers, "too many queries in flight"))
        self._in_flight += 1

        def done(outcome: bytes | Failure) -> bytes | Failure:
            self._in_flight -= 1
            return outcome

        return self._forward(message.toStr(), servers, tcp).addBoth(done)


class Forwarder:
    """
    Queries to upstream servers, as dockerd's resolver sends them: over the
    protocol the client used; servers in order, in rounds of
    L{FORWARD_TIMEOUT}; an upstream's SERVFAIL, REFUSED or other error, or
    a refused connection, moves on to the next server; an answer or
    NXDOMAIN is the reply.

    @param exchange: Seam for tests: one exchange with one server (by
        default L{exchange} on the reactor).
    """

    def __init__(self, reactor: Any, exchange: Exchange | None = None) -> None:
        self._reactor = reactor
        self._exchange = exchange or self._network

    def forward(
        self, query: bytes, servers: tuple[Server, ...], tcp: bool
    ) -> Deferred[bytes]:
        """
        Send C{query} (a whole message) to C{servers}.

        @return: Fires with the reply's bytes; fails with L{ForwardFailed}.
        """
        return ensureDeferred(self._forward(query, servers, tcp))

    async def _forward(
        self, query: bytes, servers: tuple[Server, ...], tcp: bool
    ) -> bytes:
        remaining = list(servers)
        reason: object = "no server"
        for timeout in FORWARD_TIMEOUT:
            for upstream in list(remaining):
                # A random ID per query: with the random source port, what
                # makes a forged reply hard to place.
                ident = secrets.randbelow(65536)
                data = struct.pack("!H", ident) + query[2:]
                try:
                    reply = await self._exchange(
                        upstream, data, tcp, timeout, reply_to(ident)
                    )
                except ExchangeTimeout as e:
                    reason = e
                    continue
                except Exception as e:
                    reason = e
                    remaining.remove(upstream)
                    continue
                if rcode_of(reply) in {dns.OK, dns.ENAME}:
                    return reply
                reason = f"{upstream[0]} answered rcode {rcode_of(reply)}"
                remaining.remove(upstream)
        raise ForwardFailed(servers, reason)

    def _network(
        self,
        server: Server,
        data: bytes,
        tcp: bool,
        timeout: float,
        accept: Callable[[bytes], bool],
    ) -> Deferred[bytes]:
        return exchange(
            self._reactor, server, data, tcp=tcp, timeout=timeout, accept=accept
        )


def exchange(
    reactor: Any,
    server: Server,
    data: bytes,
    *,
    tcp: bool,
    timeout: float,
    accept: Callable[[bytes], bool],
) -> Deferred[bytes]:
    """
    Send one message to one server and wait for the reply that C{accept}
    takes, for at most C{timeout} seconds.

    @return: Fires with the reply's bytes; fails with L{ExchangeTimeout},
        or the socket's error (a refused port fails at once).
    """
    if tcp:
        return _StreamExchange.start(reactor, server, data, timeout, accept)
    return _DatagramExchange.start(reactor, server, data, timeout, accept)


@implementer(IReadDescriptor)
class _DatagramExchange:
    """
    One query over UDP, from a socket of its own connected to the server
    (so only the server's datagrams arrive, and an ICMP refusal is seen),
    read by the reactor without a Twisted port (which logs its start and
    end: two lines per query).
    """

    def __init__(
        self,
        reactor: Any,
        sock: socket.socket,
        accept: Callable[[bytes], bool],
    ) -> None:
        self._reactor = reactor
        self._socket = sock
        self._accept = accept
        self.done: Deferred[bytes] = Deferred(lambda _: self._finish(None))
        self._timer: IDelayedCall | None = None

    @classmethod
    def start(
        cls,
        reactor: Any,
        server: Server,
        data: bytes,
        timeout: float,
        accept: Callable[[bytes], bool],
    ) -> Deferred[bytes]:
        """Send C{data} to C{server}; fires with the reply."""
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(server)
            sock.send(data)
        except OSError:
            sock.close()
            return fail()
        exchange = cls(reactor, sock, accept)
        reactor.addReader(exchange)
        exchange._timer = reactor.callLater(
            timeout,
            exchange._finish,
            Failure(ExchangeTimeout(server)),  # type: ignore[no-untyped-call]
        )
        return exchange.done

    def fileno(self) -> int:
        """The socket, for the reactor."""
        return self._socket.fileno()

    def logPrefix(self) -> str:
        """How the reactor names us in its log."""
        return "dns-forward"

    def doRead(self) -> None:
        """A datagram: the reply if C{accept} says so, else ignored."""
        try:
            data = self._socket.recv(MAX_MESSAGE)
        except BlockingIOError:
            return
        except OSError:
            self._finish(Failure())  # type: ignore[no-untyped-call]
            return
        if self._accept(data):
            self._finish(data)

    def connectionLost(self, reason: Failure) -> None:
        """The reactor let go of the socket (it is stopping)."""
        self._finish(reason)

    def _finish(self, outcome: bytes | Failure | None) -> None:
        if self._socket.fileno() == -1:
            return
        self._reactor.removeReader(self)
        self._socket.close()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if isinstance(outcome, bytes):
            self.done.callback(outcome)
        elif outcome is not None:
            self.done.errback(outcome)


class _StreamExchange(Int16StringReceiver):
    """One query over TCP: connect, send, the first accepted reply, hang up."""

    MAX_LENGTH = MAX_MESSAGE

    def __init__(self, data: bytes, accept: Callable[[bytes], bool]) -> None:
        self._data = data
        self._accept = accept
        self.done: Deferred[bytes] = Deferred()

    @classmethod
    def start(
        cls,
        reactor: Any,
        server: Server,
        data: bytes,
        timeout: float,
        accept: Callable[[bytes], bool],
    ) -> Deferred[bytes]:
        """Send C{data} to C{server} over TCP; fires with the reply."""
        protocol = cls(data, accept)
        # No connect timeout of its own: expire() below ends a connection
        # attempt too, as a timeout (try again), not a failure (give up).
        connector = reactor.connectTCP(server[0], server[1], _OneConnection(protocol))

        def expire() -> None:
            if protocol.transport is not None:
                protocol.transport.abortConnection()  # type: ignore[attr-defined]
            else:
                connector.stopConnecting()
            timed_out = Failure(ExchangeTimeout(server))  # type: ignore[no-untyped-call]
            protocol.fail(timed_out)

        timer = reactor.callLater(timeout, expire)

        def stop_timer(outcome: bytes | Failure) -> bytes | Failure:
            if timer.active():
                timer.cancel()
            return outcome

        return protocol.done.addBoth(stop_timer)

    def connectionMade(self) -> None:
        self.sendString(self._data)  # type: ignore[no-untyped-call]

    def stringReceived(self, string: bytes) -> None:
        if self._accept(string) and not self.done.called:
            self.done.callback(string)
            if self.transport is not None:
                self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.fail(reason)

    def fail(self, reason: Failure) -> None:
        """End the exchange with C{reason}, unless it has ended."""
        if not self.done.called:
            self.done.errback(reason)


class _OneConnection(ClientFactory):
    """The factory of one L{_StreamExchange}: quiet, no reconnection."""

    noisy = False

    def __init__(self, protocol: _StreamExchange) -> None:
        self._protocol = protocol

    def buildProtocol(self, _addr: IAddress | None) -> _StreamExchange:
        return self._protocol

    def clientConnectionFailed(self, _connector: Any, reason: Failure) -> None:
        self._protocol.fail(reason)


class _StreamProtocol(dns.DNSProtocol):
    """
    DNS over TCP from a container, hung up on when it has asked nothing
    for L{TCP_IDLE_TIMEOUT} (each open connection is a descriptor of the
    daemon's). The clock runs from the connection or the last reply until
    a whole query arrives, so neither a slow upstream nor a client
    trickling bytes changes it.

    @ivar reactor: Where the idle timer runs.
    """

    reactor: Any
    _idle: IDelayedCall | None = None
    _outstanding = 0
    _closed = False

    def connectionMade(self) -> None:
        self._arm()
        super().connectionMade()  # type: ignore[no-untyped-call]

    def query_started(self) -> None:
        """A query arrived: no idle clock until it is answered."""
        self._outstanding += 1
        self._disarm()

    def query_answered(self) -> None:
        """A reply was written: when none is owed, the clock runs again."""
        self._outstanding = max(0, self._outstanding - 1)
        if not self._outstanding:
            self._arm()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._closed = True
        self._disarm()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    def _arm(self) -> None:
        self._disarm()
        if not self._closed:
            self._idle = self.reactor.callLater(TCP_IDLE_TIMEOUT, self._hang_up)

    def _disarm(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None

    def _hang_up(self) -> None:
        self._idle = None
        if self.transport is not None:
            self.transport.loseConnection()


class ServerFactory(server.DNSServerFactory):
    """
    Twisted Names' server for one container: decoding, opcodes and the
    protocols are Twisted's; a query is answered by its
    L{ContainerResolver}, or relayed from upstream as it came.
    """

    protocol = _StreamProtocol
    noisy = False

    def __init__(self, resolver: ContainerResolver, reactor: Any) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        # The RA flag: the daemon recurses for the container, as dockerd.
        self.canRecurse = True
        self.container = resolver
        self._reactor = reactor

    def buildProtocol(self, _addr: object) -> _StreamProtocol | None:
        """A new TCP client, unless this container has too many open."""
        if len(self.connections) >= TCP_CONNECTIONS:
            return None
        protocol = _StreamProtocol(self)  # type: ignore[no-untyped-call]
        protocol.factory = self
        protocol.reactor = self._reactor
        return protocol

    def messageReceived(
        self, message: dns.Message, proto: Any, address: Any = None
    ) -> None:
        """
        A message from the container; on TCP, its connection owes a reply
        until L{_send} writes one (every message gets one).
        """
        if isinstance(proto, _StreamProtocol):
            proto.query_started()
        super().messageReceived(message, proto, address)  # type: ignore[no-untyped-call]

    def handleQuery(
        self, message: dns.Message, protocol: Any, address: Any
    ) -> Deferred[None]:
        """
        Answer the query in C{message} from the networks' names, or relay
        the upstream's reply; SERVFAIL when neither can be had.
        """
        query = message.queries[0]
        try:
            records = self.container.local(query)
        except Exception:
            _log.failure(
                "Embedded DNS: answering {query} for {container} failed",
                query=query,
                container=self.container.container_id[:12],
            )
            self._answer(protocol, message, address, dns.ESERVER)
            return succeed(None)
        if records is not None:
            self._answer(protocol, message, address, dns.OK, records)
            return succeed(None)
        forwarded = maybeDeferred(self.container.forward, message, address is None)
        return forwarded.addCallbacks(
            self._relay,
            self._not_forwarded,
            callbackArgs=(protocol, message, address),
            errbackArgs=(protocol, message, address),
        )

    def _answer(
        self,
        protocol: Any,
        message: dns.Message,
        address: Any,
        rcode: int,
        records: Records = ([], [], []),
    ) -> None:
        answers, authority, additional = records
        response = self._responseFromMessage(  # type: ignore[no-untyped-call]
            message=message,
            rCode=rcode,
            answers=answers,
            authority=authority,
            additional=additional,
        )
        self.sendReply(protocol, response, address)

    def _relay(
        self, reply: bytes, protocol: Any, message: dns.Message, address: Any
    ) -> None:
        """The upstream's reply as it came, with the container's ID."""
        data = struct.pack("!H", message.id) + reply[2:]
        self._send(protocol, address, data)

    def _not_forwarded(
        self, failure: Failure, protocol: Any, message: dns.Message, address: Any
    ) -> None:
        if isinstance(failure.value, ForwardFailed):
            _log.info(
                "Embedded DNS: no upstream answered {query} for {container}: {error}",
                query=message.queries[0],
                container=self.container.container_id[:12],
                error=failure.value,
            )
        elif not isinstance(failure.value, NoForwarding):
            _log.failure(
                "Embedded DNS: forwarding {query} for {container} failed",
                failure,
                query=message.queries[0],
                container=self.container.container_id[:12],
            )
        self._answer(protocol, message, address, dns.ESERVER)

    def sendReply(self, protocol: Any, message: dns.Message, address: Any) -> None:
        """Send a reply the server made (see L{_send})."""
        try:
            data = message.toStr()
        except Exception:
            _log.failure(
                "Embedded DNS: encoding the reply to {container} failed",
                container=self.container.container_id[:12],
            )
            _replied(protocol)
            return
        self._send(protocol, address, data)

    def _send(self, protocol: Any, address: Any, data: bytes) -> None:
        """
        Write a reply: a datagram to C{address}, or a length-prefixed
        message on the TCP connection (C{address} None). Nothing when the
        socket has closed meanwhile (the container went while its query was
        forwarded): that is no error.
        """
        try:
            if protocol.transport is None:
                pass
            elif address is None:
                protocol.sendString(data)
            else:
                protocol.transport.write(data, address)
        except Exception:
            _log.failure(
                "Embedded DNS: replying to {container} failed",
                container=self.container.container_id[:12],
            )
        _replied(protocol)


def _replied(protocol: object) -> None:
    """A TCP connection owes one reply less (L{_StreamProtocol}'s clock)."""
    if isinstance(protocol, _StreamProtocol):
        protocol.query_answered()


@frozen
class _Attachment:
    """A container's adopted ports and the factory serving them."""

    udp: Any
    tcp: Any
    factory: ServerFactory

    def close(self) -> Deferred[None]:
        """Stop both ports and hang up on the TCP clients still connected."""
        for protocol in list(self.factory.connections):
            protocol.transport.loseConnection()
        stopped = [maybeDeferred(port.stopListening) for port in (self.udp, self.tcp)]
        return DeferredList(stopped, consumeErrors=True).addCallback(lambda _: None)


class EmbeddedDNS:
    """
    The daemon's DNS server at 127.0.0.11 for every attached container.

    @param reactor: The reactor that adopts the sockets, runs C{nft} and
        forwards queries.
    @param lookup: C{(container_id, name) -> addresses | None}, asked at
        each query (see L{Lookup}).
    @param upstreams: C{container_id -> servers}, asked at each forwarded
        query: the container's C{--dns}, else the host's resolvers (a
        loopback one works: forwarding is from the daemon's namespace);
        empty for a container on internal networks only.
    @param reverse: C{(container_id, ip) -> name | None} for PTR queries;
        without it they are all forwarded.
    @param open_sockets: Seam for tests: makes L{ResolverSockets} inside a
        namespace (by default a thread that joins it: L{setns}).
    @param run: Seam for tests: the command runner (L{commands.run}).
    @param forward: Seam for tests: how queries leave the daemon (by
        default L{Forwarder}).
    """

    def __init__(
        self,
        reactor: Any,
        *,
        lookup: Lookup,
        upstreams: Upstreams,
        reverse: Reverse | None = None,
        open_sockets: Callable[[Path], Deferred[ResolverSockets]] | None = None,
        run: Callable[..., Deferred[commands.Result]] = commands.run,
        forward: Forward | None = None,
    ) -> None:
        self._reactor = reactor
        self._lookup = lookup
        self._upstreams = upstreams
        self._reverse = reverse
        self._open_sockets = open_sockets or self._sockets_in
        self._run = run
        self._forward = forward or Forwarder(reactor).forward
        self._attached: dict[str, _Attachment] = {}
        # Attaches in flight per container (a detach forgets them), and
        # the lock that runs them one at a time: each one's nft table is
        # then installed after the one before, and the last attach wins.
        self._attaching: dict[str, set[object]] = {}
        self._locks: dict[str, DeferredLock] = {}

    def attached(self) -> set[str]:
        """The containers served now."""
        return set(self._attached)

    def ports(self, container_id: str) -> tuple[int, int] | None:
        """The UDP and TCP ports serving C{container_id} in its namespace."""
        attachment = self._attached.get(container_id)
        if attachment is None:
            return None
        return attachment.udp.getHost().port, attachment.tcp.getHost().port

    def resolver(self, container_id: str) -> ContainerResolver:
        """The resolver that answers C{container_id}'s queries."""
        return ContainerResolver(
            container_id,
            lookup=self._lookup,
            upstreams=self._upstreams,
            forward=self._forward,
            reverse=self._reverse,
        )

    def attach(self, container_id: str, netns: Path) -> Deferred[None]:
        """
        Serve C{container_id} at 127.0.0.11:53 inside the network namespace
        at C{netns} (its C{lo} must be up). Attaching an attached container
        again replaces its sockets (as after a daemon restart: the old
        table inside the namespace is replaced in one step).

        @return: Fires when queries are answered; fails with the error of
            the namespace, the sockets or L{DNSSetupError} (nothing is left
            open), or L{Detached} if L{detach} came first.
        """
        token = object()
        self._attaching.setdefault(container_id, set()).add(token)
        lock = self._locks.setdefault(container_id, DeferredLock())
        attached = lock.run(
            lambda: ensureDeferred(self._attach(container_id, netns, token))
        )

        def settle(outcome: Failure | None) -> Failure | None:
            self._forget(container_id, token)
            if not lock.locked and not lock.waiting:
                self._locks.pop(container_id, None)
            return outcome

        return attached.addBoth(settle)

    async def _attach(self, container_id: str, netns: Path, token: object) -> None:
        self._still_wanted(container_id, token)
        sockets = await self._open_sockets(netns)
        attachment = self._adopt(container_id, sockets)
        try:
            await self._redirect(netns, sockets)
            self._still_wanted(container_id, token)
        except BaseException:
            await attachment.close()
            raise
        previous = self._attached.pop(container_id, None)
        self._attached[container_id] = attachment
        if previous is not None:
            await previous.close()

    def _still_wanted(self, container_id: str, token: object) -> None:
        """
        @raise Detached: L{detach} was called since the attach that holds
            C{token} began.
        """
        if token not in self._attaching.get(container_id, ()):
            raise Detached(container_id)

    def _forget(self, container_id: str, token: object) -> None:
        tokens = self._attaching.get(container_id)
        if tokens is not None:
            tokens.discard(token)
            if not tokens:
                del self._attaching[container_id]

    def detach(self, container_id: str) -> Deferred[None]:
        """
        Stop serving C{container_id}: its sockets closed. The table inside
        its namespace goes with the namespace. Detaching a container that
        is not attached does nothing.
        """
        self._attaching.pop(container_id, None)
        attachment = self._attached.pop(container_id, None)
        if attachment is None:
            return succeed(None)
        return attachment.close()

    def close(self) -> Deferred[None]:
        """Detach every container (the daemon stops)."""
        closing = [self.detach(container_id) for container_id in list(self._attached)]
        return DeferredList(closing, consumeErrors=True).addCallback(lambda _: None)

    def _adopt(self, container_id: str, sockets: ResolverSockets) -> _Attachment:
        """
        Hand the sockets to the reactor (which takes its own copies of the
        descriptors) and close ours.
        """
        factory = ServerFactory(self.resolver(container_id), self._reactor)
        datagrams = dns.DNSDatagramProtocol(  # type: ignore[no-untyped-call]
            controller=factory, reactor=self._reactor
        )
        datagrams.noisy = False
        try:
            udp = self._reactor.adoptDatagramPort(
                sockets.udp, socket.AF_INET, datagrams
            )
            try:
                tcp = self._reactor.adoptStreamPort(
                    sockets.tcp, socket.AF_INET, factory
                )
            except BaseException:
                udp.stopListening()
                raise
        finally:
            os.close(sockets.udp)
            os.close(sockets.tcp)
        return _Attachment(udp, tcp, factory)

    async def _redirect(self, netns: Path, sockets: ResolverSockets) -> None:
        """Install L{nat_rules} inside the namespace (one nft run)."""
        script = nat_rules(sockets.udp_port, sockets.tcp_port).encode()
        argv = ["nsenter", f"--net={netns}", "nft", "-f", "-"]
        result = await self._run(self._reactor, argv, stdin=script)
        if result.code != 0:
            message = result.err.decode(errors="replace").strip()
            raise DNSSetupError(f"nft in {netns}: {message}")

    def _sockets_in(self, netns: Path) -> Deferred[ResolverSockets]:
        return setns.call_in_netns(self._reactor, netns, bind_sockets)
