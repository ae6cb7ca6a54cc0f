# -*- test-case-name: tests.daemon.network.test_ports -*-
"""
Published host ports, held as dockerd holds them: by a socket the daemon
binds on the host address and port, so that neither another container nor
a host process can take the port while it is published, and C{ss -ltn}
shows who has it.

Nothing is ever accepted or read on these sockets: the firewall's DNAT
sends the traffic to the container before it could reach them. A TCP
socket listens (with no backlog) so that the binding is a real listener,
which the kernel refuses to share with any other listener, reuse or not;
it has C{SO_REUSEADDR}, as dockerd's, so that connections an earlier
server on the port left in TIME_WAIT do not stop a publish. A UDP socket
is bound without C{SO_REUSEADDR} (dockerd sets it): two UDP sockets that
both set it share a port, so a host process that had it (DNS servers do)
would go unnoticed and lose its traffic, and the kernel's pick for port 0
could land on a port shared that way.

A connection that reaches a host port between L{PortReservations.reserve}
and the firewall's apply sits in the listener's queue, unanswered: the
network service reserves, applies the table, and only then starts the
container (and at the end releases, then applies), so clients that learn
the port from the API never meet that window.

IPv4 only: a binding on C{::} (the IPv6 half of "all addresses") or on
another IPv6 address is skipped and logged, as dockerd does without its
userland proxy for an IPv4-only container.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any

from attrs import frozen

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from dockserve.daemon.network import commands
from dockserve.daemon.network.commands import Result
from dockserve.daemon.network.model import PortBinding
from dockserve.errors import InvalidParameter, SystemError_

_log = Logger()

#: The protocols a port can be published with (dockerd also has sctp).
PROTOCOLS = ("tcp", "udp")

#: How a command is run: C{commands.run}'s signature.
Runner = Callable[
    [Any, list[str], bytes | None, Mapping[str, str] | None], Deferred[Result]
]


@frozen
class PortRequest:
    """
    One C{-p}: a container port to publish on the host.

    @ivar proto: C{tcp} or C{udp}.
    @ivar host_ip: The host address (C{""} or C{0.0.0.0}: all of them).
    @ivar host_port: The host port; 0 for one the kernel picks from
        C{ip_local_port_range} (C{-p 80}, C{-p 0:80}, C{-P}).
    @ivar container_port: The port in the container.
    @ivar container_ip: The container's address on the network.
    @ivar host_port_end: With C{-p 8000-8010:80}, the range's end: the
        first port of the range that is free is taken. 0 (or
        C{host_port}): one port. (C{-p 8000-8001:80-81} is two requests.)
    """

    proto: str
    host_ip: str
    host_port: int
    container_port: int
    container_ip: str
    host_port_end: int = 0


@frozen
class _Held:
    binding: PortBinding
    sock: socket.socket


def external_connectivity_error(
    endpoint_name: str, endpoint_id: str, error: SystemError_
) -> SystemError_:
    """
    The reservation's error wrapped as dockerd does, as C{docker run} prints
    it: C{driver failed programming external connectivity on endpoint
    <name> (<id>): Bind for 0.0.0.0:8080 failed: port is already
    allocated}.
    """
    return SystemError_(
        "driver failed programming external connectivity on endpoint "
        f"{endpoint_name} ({endpoint_id}): {error.message}"
    )


class PortReservations:
    """
    The host ports the daemon holds, by container. Not thread-safe: the
    reactor thread's alone.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, str, int], _Held] = {}
        #: The last random port given, by protocol and host address.
        self._last: dict[tuple[str, str], int] = {}

    def reserve(
        self, container_id: str, requests: Sequence[PortRequest]
    ) -> list[PortBinding]:
        """
        Hold a host port for each of C{requests}, in order.

        @return: The bindings, with the host ports taken (never 0); none
            for a request on an IPv6 address.
        @raise SystemError_: With dockerd's text: C{Bind for 0.0.0.0:8080
            failed: port is already allocated} when a container holds it,
            C{failed to bind host port for
            0.0.0.0:8080:172.17.0.2:80/tcp: address already in use} when
            something else on the host does. Nothing of this call stays
            held then.
        @raise InvalidParameter: For a protocol, address or range that
            cannot be published.
        """
        taken: list[tuple[str, str, int]] = []
        try:
            for request in requests:
                held = self._reserve_one(container_id, request)
                if held is not None:
                    key = _key(held.binding)
                    self._held[key] = held
                    taken.append(key)
        except BaseException:
            for key in taken:
                self._held.pop(key).sock.close()
            raise
        return [self._held[key].binding for key in taken]

    def adopt(
        self, container_id: str, bindings: Sequence[PortBinding]
    ) -> list[PortBinding]:
        """
        Hold again, after a daemon restart, the ports a running container
        had (its record's bindings). Each binding is held on its own: one
        that cannot be (a host process took the port meanwhile) is logged
        and left out, so the firewall does not steer that port away from
        whoever has it now.

        @return: The bindings that could not be held.
        """
        lost = []
        for binding in bindings:
            mine = PortBinding(
                proto=binding.proto,
                host_ip=_host_ip(binding.host_ip) or "0.0.0.0",
                host_port=binding.host_port,
                container_ip=binding.container_ip,
                container_port=binding.container_port,
                container_id=container_id,
            )
            key = _key(mine)
            if key in self._held:
                if self._held[key].binding.container_id != container_id:
                    lost.append(binding)
                continue
            try:
                self._held[key] = _Held(mine, _bind(mine))
            except OSError as e:
                _log.warn(
                    "Port {binding} of container {container} is not held again: "
                    "{error}",
                    binding=_describe(mine),
                    container=container_id,
                    error=_go_strerror(e),
                )
                lost.append(binding)
        return lost

    def release(self, container_id: str) -> list[PortBinding]:
        """
        Close C{container_id}'s sockets: its ports are free again.

        @return: The bindings it had (for L{flush_udp_conntrack}).
        """
        released = []
        for key, held in sorted(self._held.items()):
            if held.binding.container_id == container_id:
                held.sock.close()
                del self._held[key]
                released.append(held.binding)
        return released

    def release_all(self) -> None:
        """At a stop: close every socket."""
        for held in self._held.values():
            held.sock.close()
        self._held.clear()

    def bindings(self, container_id: str | None = None) -> list[PortBinding]:
        """Every binding held (or C{container_id}'s), sorted, for the firewall."""
        return [
            held.binding
            for _, held in sorted(self._held.items())
            if container_id is None or held.binding.container_id == container_id
        ]

    # --- one request -------------------------------------------------------------

    def _reserve_one(self, container_id: str, request: PortRequest) -> _Held | None:
        if request.proto not in PROTOCOLS:
            raise InvalidParameter(
                f"publishing {request.proto} ports is not supported by this daemon"
            )
        host_ip = _host_ip(request.host_ip)
        if host_ip is None:
            _log.info(
                "Port {port}/{proto} is not published on {address}: IPv6 is not "
                "supported yet",
                port=request.container_port,
                proto=request.proto,
                address=request.host_ip,
            )
            return None
        first, last = request.host_port, request.host_port_end or request.host_port
        if not 0 <= first <= last < 65536 or not 0 < request.container_port < 65536:
            raise InvalidParameter(f"invalid port range: {first}-{last}")

        def binding(port: int) -> PortBinding:
            return PortBinding(
                proto=request.proto,
                host_ip=host_ip,
                host_port=port,
                container_ip=request.container_ip,
                container_port=request.container_port,
                container_id=container_id,
            )

        if first == 0:
            return self._random(binding(0))
        if first == last:
            return self._exact(binding(first))
        return self._first_free(binding, first, last)

    def _exact(self, wanted: PortBinding) -> _Held:
        if _key(wanted) in self._held:
            raise SystemError_(
                f"Bind for {wanted.host_ip}:{wanted.host_port} failed: "
                "port is already allocated"
            )
        try:
            return _Held(wanted, _bind(wanted))
        except OSError as e:
            raise SystemError_(
                f"failed to bind host port for {_describe(wanted)}: {_go_strerror(e)}"
            ) from None

    def _random(self, wanted: PortBinding) -> _Held:
        """
        Port 0, as dockerd's allocator picks it: the port after the last
        one given for this protocol and address, in the kernel's ephemeral
        range and wrapping at its end (so the first is C{32768} and a port
        just released is not handed out again at once); one a container or
        a host process holds is passed over.
        """
        low, high = _ephemeral_range()
        space = (wanted.proto, wanted.host_ip)
        last = self._last.get(space, high)
        size = high - low + 1
        for step in range(1, size + 1):
            port = low + (last - low + step) % size
            chosen = _with_port(wanted, port)
            if _key(chosen) in self._held:
                continue
            try:
                sock = _bind(chosen)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    continue
                raise SystemError_(
                    f"failed to bind host port for {_describe(wanted)}: "
                    f"{_go_strerror(e)}"
                ) from None
            self._last[space] = port
            return _Held(chosen, sock)
        raise SystemError_("all ports are allocated")

    def _first_free(
        self, binding: Callable[[int], PortBinding], first: int, last: int
    ) -> _Held:
        """
        C{-p 8000-8010:80}: the first port of the range that no container
        holds and that binds; dockerd's texts when there is none.
        """
        failure: OSError | None = None
        failed_port = 0
        for port in range(first, last + 1):
            wanted = binding(port)
            if _key(wanted) in self._held:
                continue
            try:
                return _Held(wanted, _bind(wanted))
            except OSError as e:
                failure, failed_port = e, port
        if failure is None:
            raise SystemError_("all ports are allocated")
        ranged = _describe(binding(first), end=last)
        raise SystemError_(
            f"failed to bind host port {failed_port} for {ranged}: "
            f"{_go_strerror(failure)}"
        )


def _with_port(binding: PortBinding, port: int) -> PortBinding:
    return PortBinding(
        proto=binding.proto,
        host_ip=binding.host_ip,
        host_port=port,
        container_ip=binding.container_ip,
        container_port=binding.container_port,
        container_id=binding.container_id,
    )


def _ephemeral_range() -> tuple[int, int]:
    """
    The kernel's ephemeral range in the daemon's network namespace, where
    dockerd's allocator takes its ports too (its default when unreadable).
    """
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low, high = (int(n) for n in text.split())
    except (OSError, ValueError):
        return 32768, 60999
    return (low, high) if 0 < low <= high < 65536 else (32768, 60999)


def _key(binding: PortBinding) -> tuple[str, str, int]:
    return (binding.proto, binding.host_ip, binding.host_port)


def _host_ip(address: str) -> str | None:
    """
    The IPv4 address to bind (C{0.0.0.0} for all), or C{None} for an IPv6
    one.

    @raise InvalidParameter: When C{address} is no address at all.
    """
    if address in {"", "0.0.0.0"}:
        return "0.0.0.0"
    try:
        parsed = ip_address(address.strip("[]"))
    except ValueError:
        raise InvalidParameter(f"invalid host IP address: {address}") from None
    if isinstance(parsed, IPv4Address):
        return str(parsed)
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return None


def _bind(binding: PortBinding) -> socket.socket:
    """A socket that holds C{binding}'s host port (port 0: the kernel's pick)."""
    tcp = binding.proto == "tcp"
    sock = socket.socket(
        socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    )
    try:
        if tcp:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((binding.host_ip, binding.host_port))
        if tcp:
            sock.listen(0)
    except BaseException:
        sock.close()
        raise
    return sock


def _describe(binding: PortBinding, end: int = 0) -> str:
    """
    Go's C{types.PortBinding.String} in dockerd:
    C{HostIP:HostPort[-End]:IP:Port/Proto}, leaving out what is unset.
    """
    text = f"{binding.host_ip}:"
    if binding.host_port:
        text += str(binding.host_port)
        if end and end != binding.host_port:
            text += f"-{end}"
        text += ":"
    if binding.container_ip:
        text += f"{binding.container_ip}:"
    return f"{text}{binding.container_port}/{binding.proto}"


def _go_strerror(error: OSError) -> str:
    """C{syscall.Errno}'s text in Go: the C library's, lower case first."""
    text = os.strerror(error.errno) if error.errno else str(error)
    return text[:1].lower() + text[1:]


def flush_udp_conntrack(
    reactor: Any,
    bindings: Sequence[PortBinding],
    *,
    conntrack: Sequence[str] = ("conntrack",),
    run: Runner = commands.run,
) -> Deferred[None]:
    """
    Forget the kernel's UDP flows to C{bindings}' host ports: a client
    that keeps sending keeps its flow, and with it the DNAT to a container
    that is gone (CNI plugins #1277). Call it after the firewall no longer
    publishes the ports (released) or newly does (a flow from before would
    never be translated). Needs C{conntrack} (the Debian package); without
    it, or on any failure, this only logs. TCP ports need nothing.
    """
    return Deferred.fromCoroutine(_flush(reactor, bindings, list(conntrack), run))


async def _flush(
    reactor: Any, bindings: Sequence[PortBinding], conntrack: list[str], run: Runner
) -> None:
    targets = sorted({(b.host_ip, b.host_port) for b in bindings if b.proto == "udp"})
    for host_ip, port in targets:
        argv = [*conntrack, "-D", "-p", "udp", "--orig-port-dst", str(port)]
        if host_ip not in {"", "0.0.0.0"}:
            argv += ["--orig-dst", host_ip]
        try:
            result = await run(reactor, argv, None, None)
        except OSError as e:
            _log.info("UDP flows not flushed: {argv}: {error}", argv=argv[0], error=e)
            return
        # conntrack exits 1 when it found nothing to delete.
        if result.code not in {0, 1}:
            _log.info(
                "UDP flows to port {port} not flushed: {error}",
                port=port,
                error=result.err.decode("utf-8", "replace").strip(),
            )
