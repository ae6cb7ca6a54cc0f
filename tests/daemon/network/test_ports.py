# -*- test-case-name: tests.daemon.network.test_ports -*-
"""
Tests for L{dockserve.daemon.network.ports}.

Reservations in this process bind loopback addresses only (127.0.0.x),
on ports the kernel picks or high ones found free; the wildcard address
is bound only in a network namespace a test makes for itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from twisted.internet.defer import succeed
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from dockserve.daemon.network.commands import Result
from dockserve.daemon.network.model import PortBinding
from dockserve.daemon.network.ports import (
    PortRequest,
    PortReservations,
    external_connectivity_error,
    flush_udp_conntrack,
)
from dockserve.errors import InvalidParameter, SystemError_

LO = "127.0.0.1"
CIP = "10.88.0.2"


def tcp(host_port: int, container_port: int = 80, host_ip: str = LO, end: int = 0):
    return PortRequest("tcp", host_ip, host_port, container_port, CIP, end)


def udp(host_port: int, container_port: int = 53, host_ip: str = LO):
    return PortRequest("udp", host_ip, host_port, container_port, CIP)


def port_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def bindable(proto: str, address: str, port: int) -> bool:
    """Whether a plain socket (no SO_REUSEADDR) can bind C{address:port} now."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
        if proto == "tcp":
            s.listen()
        return True


def free_block(count: int) -> int:
    """
    The first of C{count} consecutive TCP ports free on 127.0.0.1, above
    the ephemeral range (which the kernel hands out meanwhile).
    """
    high = port_range()[1]
    start = max(high + 1, 61000)
    for base in range(start, 65536 - count, 97):
        if all(bindable("tcp", LO, p) for p in range(base, base + count)):
            return base
    raise SkipTest("no block of free ports on 127.0.0.1")


class HostProcess:
    """A socket the way a host server holds a port (SO_REUSEADDR, listening)."""

    def __init__(self, test: SynchronousTestCase, proto: str, address: str, port: int):
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        self.sock = socket.socket(socket.AF_INET, kind)
        test.addCleanup(self.sock.close)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        if proto == "tcp":
            self.sock.listen()
        self.port = self.sock.getsockname()[1]


class ReserveTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ports = PortReservations()
        self.addCleanup(self.ports.release_all)

    def test_random(self) -> None:
        """
        Port 0 takes a port inside ip_local_port_range, and holds it: TCP
        as a listener, UDP bound.
        """
        low, high = port_range()
        got = self.ports.reserve("c1", [tcp(0), udp(0)])
        self.assertEqual([b.proto for b in got], ["tcp", "udp"])
        for binding in got:
            self.assertTrue(low <= binding.host_port <= high, binding)
            self.assertEqual(binding.host_ip, LO)
            self.assertEqual(binding.container_id, "c1")
            self.assertFalse(bindable(binding.proto, LO, binding.host_port))
        listeners = Path("/proc/net/tcp").read_text()
        local = f"0100007F:{got[0].host_port:04X} 00000000:0000 0A"  # 0A: LISTEN
        self.assertIn(local, listeners)

    def test_random_in_turn(self) -> None:
        """
        As dockerd's allocator: random ports are given in turn from the
        range's start; a port someone holds is passed over; a released one
        is not given again at once.
        """
        [first] = self.ports.reserve("c1", [tcp(0)])
        [second] = self.ports.reserve("c2", [tcp(0)])
        self.assertGreater(second.host_port, first.host_port)
        holder = HostProcess(self, "tcp", LO, second.host_port + 1)
        self.ports.release("c1")
        [third] = self.ports.reserve("c3", [tcp(0)])
        self.assertGreater(third.host_port, holder.port)
        first_udp, second_udp = self.ports.reserve("c4", [udp(0), udp(0)])
        self.assertGreater(second_udp.host_port, first_udp.host_port)

    def test_exact(self) -> None:
        """A given port is held with the request's values."""
        port = free_block(1)
        (binding,) = self.ports.reserve("c1", [tcp(port, 8080)])
        self.assertEqual(binding, PortBinding("tcp", LO, port, CIP, 8080, "c1"))
        self.assertEqual(self.ports.bindings(), [binding])
        self.assertEqual(self.ports.bindings("c2"), [])
        self.assertFalse(bindable("tcp", LO, port))

    def test_allocated(self) -> None:
        """
        A port another container holds: dockerd's C{port is already
        allocated}, for TCP and UDP alike; the same port with the other
        protocol is free.
        """
        tcp_binding, udp_binding = self.ports.reserve("c1", [tcp(0), udp(0)])
        for request in (tcp(tcp_binding.host_port), udp(udp_binding.host_port)):
            error = self.assertRaises(SystemError_, self.ports.reserve, "c2", [request])
            self.assertEqual(
                error.message,
                f"Bind for {LO}:{request.host_port} failed: port is already allocated",
            )

    def test_host_process(self) -> None:
        """
        A port some host process holds: dockerd's C{failed to bind host
        port for <host>:<port>:<container>:<port>/<proto>: address already
        in use}; for UDP too, even when that process set SO_REUSEADDR.
        """
        for proto, request in (("tcp", tcp), ("udp", udp)):
            holder = HostProcess(self, proto, LO, 0)
            wanted = request(holder.port)
            error = self.assertRaises(SystemError_, self.ports.reserve, "c1", [wanted])
            self.assertEqual(
                error.message,
                f"failed to bind host port for {LO}:{holder.port}:{CIP}:"
                f"{wanted.container_port}/{proto}: address already in use",
            )
        self.assertEqual(self.ports.bindings(), [])

    def test_wrapped(self) -> None:
        """The caller's wrapping, as docker run prints it."""
        error = external_connectivity_error(
            "web", "e" * 64, SystemError_("Bind for 0.0.0.0:18080 failed: x")
        )
        self.assertEqual(
            error.message,
            "driver failed programming external connectivity on endpoint web "
            f"({'e' * 64}): Bind for 0.0.0.0:18080 failed: x",
        )

    def test_rollback(self) -> None:
        """
        When one request of a call fails, the ports the call took before
        it are free again and nothing of the call is listed.
        """
        (held,) = self.ports.reserve("c1", [tcp(0)])
        error = self.assertRaises(
            SystemError_,
            self.ports.reserve,
            "c2",
            [tcp(0), udp(0), tcp(held.host_port)],
        )
        self.assertIn("already allocated", error.message)
        self.assertEqual(self.ports.bindings(), [held])
        self.assertEqual(self.ports.bindings("c2"), [])

    def test_rollback_frees(self) -> None:
        """The ports a failed call took can be bound by anyone after it."""
        base = free_block(2)
        holder = HostProcess(self, "tcp", LO, base + 1)
        self.assertRaises(
            SystemError_, self.ports.reserve, "c1", [tcp(base), tcp(holder.port)]
        )
        self.assertTrue(bindable("tcp", LO, base))

    def test_range_first_free(self) -> None:
        """
        C{-p A-B:80} takes the first port of the range that is free:
        neither a container's nor a host process's.
        """
        base = free_block(4)
        self.ports.reserve("c1", [tcp(base)])
        HostProcess(self, "tcp", LO, base + 1)
        (got,) = self.ports.reserve("c2", [tcp(base, end=base + 3)])
        self.assertEqual(got.host_port, base + 2)
        (again,) = self.ports.reserve("c3", [tcp(base, end=base + 3)])
        self.assertEqual(again.host_port, base + 3)

    def test_range_exhausted(self) -> None:
        """
        No free port in a range: C{all ports are allocated} when
        containers hold them all, else the bind error of the last port
        tried, naming the range, as dockerd.
        """
        base = free_block(2)
        self.ports.reserve("c1", [tcp(base), tcp(base + 1)])
        error = self.assertRaises(
            SystemError_, self.ports.reserve, "c2", [tcp(base, end=base + 1)]
        )
        self.assertEqual(error.message, "all ports are allocated")
        self.ports.release("c1")
        self.ports.reserve("c1", [tcp(base)])
        HostProcess(self, "tcp", LO, base + 1)
        error = self.assertRaises(
            SystemError_, self.ports.reserve, "c2", [tcp(base, end=base + 1)]
        )
        self.assertEqual(
            error.message,
            f"failed to bind host port {base + 1} for {LO}:{base}-{base + 1}:"
            f"{CIP}:80/tcp: address already in use",
        )

    def test_addresses(self) -> None:
        """
        Two loopback addresses hold the same port apart; C{::} (the IPv6
        half of "all addresses") and other IPv6 addresses are skipped; a
        non-address is a bad parameter; an IPv4-mapped IPv6 one is IPv4.
        """
        (first,) = self.ports.reserve("c1", [tcp(0)])
        (second,) = self.ports.reserve(
            "c2", [tcp(first.host_port, host_ip="127.0.0.2")]
        )
        self.assertEqual(second.host_ip, "127.0.0.2")
        self.assertEqual(self.ports.reserve("c3", [tcp(0, host_ip="::")]), [])
        self.assertEqual(self.ports.reserve("c3", [tcp(0, host_ip="[::1]")]), [])
        (mapped,) = self.ports.reserve("c3", [tcp(0, host_ip="::ffff:127.0.0.3")])
        self.assertEqual(mapped.host_ip, "127.0.0.3")
        self.assertRaises(
            InvalidParameter, self.ports.reserve, "c4", [tcp(0, host_ip="nope")]
        )

    def test_invalid(self) -> None:
        """An unknown protocol, or a backwards range, is refused."""
        sctp = PortRequest("sctp", LO, 0, 80, CIP)
        self.assertRaises(InvalidParameter, self.ports.reserve, "c1", [sctp])
        error = self.assertRaises(
            InvalidParameter, self.ports.reserve, "c1", [tcp(9000, end=8000)]
        )
        self.assertEqual(error.message, "invalid port range: 9000-8000")


class ReleaseAdoptTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ports = PortReservations()
        self.addCleanup(self.ports.release_all)

    def test_release(self) -> None:
        """Releasing closes one container's sockets and tells which."""
        mine = self.ports.reserve("c1", [tcp(0), udp(0)])
        theirs = self.ports.reserve("c2", [tcp(0)])
        self.assertEqual(set(self.ports.release("c1")), set(mine))
        self.assertEqual(self.ports.bindings(), theirs)
        for binding in mine:
            self.assertTrue(bindable(binding.proto, LO, binding.host_port))
        self.assertEqual(self.ports.release("c1"), [])

    def test_adopt(self) -> None:
        """
        After a restart, a running container's bindings are held again;
        again for the same container is nothing new; one a host process
        took meanwhile, or another container holds, is lost (and logged).
        """
        old = self.ports.reserve("c1", [tcp(0), udp(0)])
        self.ports.release_all()
        fresh = PortReservations()
        self.addCleanup(fresh.release_all)
        self.assertEqual(fresh.adopt("c1", old), [])
        self.assertEqual(set(fresh.bindings()), set(old))
        self.assertEqual(fresh.adopt("c1", old), [])
        self.assertEqual(fresh.adopt("c2", old[:1]), old[:1])
        holder = HostProcess(self, "tcp", LO, 0)
        taken = PortBinding("tcp", LO, holder.port, CIP, 80, "c3")
        self.assertEqual(fresh.adopt("c3", [taken]), [taken])
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        self.assertEqual(fresh.bindings("c3"), [])


class FlushTests(SynchronousTestCase):
    def test_flush(self) -> None:
        """
        One C{conntrack -D} per UDP host port (with the address when it is
        a specific one); TCP ports need none; exit 1 (nothing to delete)
        and a missing tool are no error.
        """
        calls: list[list[str]] = []

        def run(_reactor: Any, argv: list[str], _stdin: Any, _env: Any) -> Any:
            calls.append(argv)
            return succeed(Result(1, b"", b"0 flow entries have been deleted."))

        bindings = [
            PortBinding("udp", "0.0.0.0", 5353, CIP, 53, "c1"),
            PortBinding("udp", LO, 5354, CIP, 53, "c1"),
            PortBinding("tcp", "0.0.0.0", 8080, CIP, 80, "c1"),
        ]
        self.successResultOf(flush_udp_conntrack(None, bindings, run=run))
        self.assertEqual(
            calls,
            [
                ["conntrack", "-D", "-p", "udp", "--orig-port-dst", "5353"],
                ["conntrack", "-D", "-p", "udp", "--orig-port-dst", "5354",
                 "--orig-dst", LO],
            ],
        )  # fmt: skip

        def missing(_reactor: Any, _argv: list[str], _stdin: Any, _env: Any) -> Any:
            raise FileNotFoundError(2, "No such file or directory")

        self.successResultOf(flush_udp_conntrack(None, bindings, run=missing))


#: Run inside a namespace of the test's own: the wildcard address and
#: dockerd's texts for it, and a UDP flow flushed.
_IN_NAMESPACE = textwrap.dedent(
    """
    import json, socket, subprocess
    from dockserve.daemon.network.ports import PortRequest, PortReservations
    from dockserve.errors import SystemError_

    out = {}
    ports = PortReservations()
    req = PortRequest("tcp", "", 18080, 80, "172.17.0.2")
    out["first"] = [b.host_ip for b in ports.reserve("a", [req])]
    try:
        ports.reserve("b", [req])
    except SystemError_ as e:
        out["allocated"] = e.message
    host = socket.socket()
    host.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    host.bind(("0.0.0.0", 18081))
    host.listen()
    try:
        ports.reserve("b", [PortRequest("tcp", "0.0.0.0", 18081, 80, "172.17.0.3")])
    except SystemError_ as e:
        out["in_use"] = e.message
    try:
        ports.reserve("b", [PortRequest("tcp", "127.0.0.1", 18080, 80, "172.17.0.3")])
    except SystemError_ as e:
        out["overlap"] = e.message
    ss = subprocess.run(["ss", "-Hltn", "sport = :18080"], capture_output=True)
    out["ss"] = ss.stdout.decode()
    print(json.dumps(out))
    """
)


class NamespaceTests(SynchronousTestCase):
    """The wildcard address, only ever in a namespace made here."""

    def setUp(self) -> None:
        if os.geteuid() != 0 or not shutil.which("ip"):
            raise SkipTest("network namespaces need root and iproute2")
        self.ns = f"dstest-pt{os.urandom(4).hex()}"
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", self.ns], check=False)
        subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True)

    def test_wildcard(self) -> None:
        """
        On 0.0.0.0 (C{""} is the same), dockerd's exact texts: another
        container's port, a host process's port; a specific address
        overlapping a held wildcard port is the kernel's refusal, as with
        dockerd; the held port shows in C{ss -ltn}.
        """
        root = Path(__file__).resolve().parents[3]
        result = subprocess.run(
            ["ip", "netns", "exec", self.ns, sys.executable, "-c", _IN_NAMESPACE],
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(root)},
            timeout=60,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        out = _json(result.stdout)
        self.assertEqual(out["first"], ["0.0.0.0"])
        self.assertEqual(
            out["allocated"], "Bind for 0.0.0.0:18080 failed: port is already allocated"
        )
        self.assertEqual(
            out["in_use"],
            "failed to bind host port for 0.0.0.0:18081:172.17.0.3:80/tcp: "
            "address already in use",
        )
        self.assertEqual(
            out["overlap"],
            "failed to bind host port for 127.0.0.1:18080:172.17.0.3:80/tcp: "
            "address already in use",
        )
        self.assertIn("0.0.0.0:18080", out["ss"])


def _json(data: bytes) -> Any:
    with contextlib.suppress(ValueError):
        return json.loads(data)
    raise AssertionError(data)
