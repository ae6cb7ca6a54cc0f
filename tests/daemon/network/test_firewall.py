# -*- test-case-name: tests.daemon.network.test_firewall -*-
"""
Tests for L{dockserve.daemon.network.firewall}.

The rendered table is checked as text; the real one only ever inside
network namespaces a test makes for itself (a "host" with bridges, an
uplink to a "world" on 198.51.100.0/24, a namespace per "container"),
deleted after it, with the machine's own ruleset and links checked
unchanged.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import textwrap
from ipaddress import IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.logger import capturedLogs
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from dockserve.daemon.network.commands import Result
from dockserve.daemon.network.firewall import (
    Firewall,
    forward_blockers,
    nft_message,
    removal,
    render,
    valid_bridge_name,
)
from dockserve.daemon.network.model import NetworkSpec, PortBinding
from dockserve.daemon.network.ports import flush_udp_conntrack
from dockserve.errors import SystemError_

if TYPE_CHECKING:
    from collections.abc import Sequence


def net(
    bridge: str,
    subnet: str,
    *,
    internal: bool = False,
    masquerade: bool = True,
    icc: bool = True,
) -> NetworkSpec:
    network = IPv4Network(subnet)
    return NetworkSpec(
        id=bridge.encode().hex().ljust(64, "0"),
        name=bridge,
        bridge=bridge,
        subnet=network,
        gateway=network.network_address + 1,
        internal=internal,
        masquerade=masquerade,
        icc=icc,
    )


NETWORKS = [
    net("br-b", "10.10.2.0/24"),
    net("br-a", "10.10.1.0/24"),
    net("br-i", "10.10.3.0/24", internal=True),
    net("br-c", "10.10.4.0/24", icc=False),
    net("br-n", "10.10.5.0/24", masquerade=False),
]

BINDINGS = [
    PortBinding("tcp", "0.0.0.0", 18080, "10.10.1.2", 80, "a1"),
    PortBinding("udp", "0.0.0.0", 18053, "10.10.1.2", 5353, "a1"),
    PortBinding("tcp", "127.0.0.1", 18081, "10.10.1.2", 80, "a1"),
    PortBinding("tcp", "198.51.100.2", 18082, "10.10.2.2", 80, "b1"),
    PortBinding("tcp", "0.0.0.0", 18083, "10.10.3.2", 80, "i1"),
    PortBinding("tcp", "0.0.0.0", 18084, "10.10.4.2", 80, "c1"),
]

#: NETWORKS and BINDINGS rendered.
GOLDEN = """\
table ip dockserve
delete table ip dockserve
table ip dockserve {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tfib daddr type local jump published
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tfib daddr type local jump published-local
\t}
\tchain published-local {
\t\tip daddr 127.0.0.1 tcp dport 18081 dnat to 10.10.1.2:80
\t\tjump published
\t}
\tchain published {
\t\tip daddr 198.51.100.2 tcp dport 18082 dnat to 10.10.2.2:80
\t\ttcp dport 18080 dnat to 10.10.1.2:80
\t\ttcp dport 18084 dnat to 10.10.4.2:80
\t\tudp dport 18053 dnat to 10.10.1.2:5353
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname "br-a" ip saddr 127.0.0.0/8 ct status dnat masquerade
\t\tct status dnat ip saddr 10.10.1.0/24 ip daddr 10.10.1.0/24 masquerade
\t\tip saddr 10.10.1.0/24 oifname != "br-a" masquerade
\t\toifname "br-b" ip saddr 127.0.0.0/8 ct status dnat masquerade
\t\tct status dnat ip saddr 10.10.2.0/24 ip daddr 10.10.2.0/24 masquerade
\t\tip saddr 10.10.2.0/24 oifname != "br-b" masquerade
\t\toifname "br-c" ip saddr 127.0.0.0/8 ct status dnat masquerade
\t\tct status dnat ip saddr 10.10.4.0/24 ip daddr 10.10.4.0/24 masquerade
\t\tip saddr 10.10.4.0/24 oifname != "br-c" masquerade
\t\toifname "br-n" ip saddr 127.0.0.0/8 ct status dnat masquerade
\t\tct status dnat ip saddr 10.10.5.0/24 ip daddr 10.10.5.0/24 masquerade
\t}
\tchain guard {
\t\ttype filter hook prerouting priority raw; policy accept;
\t\tip daddr 127.0.0.0/8 jump guard-loopback
\t}
\tchain guard-loopback {
\t\tiifname "br-a" drop
\t\tiifname "br-b" drop
\t\tiifname "br-c" drop
\t\tiifname "br-i" drop
\t\tiifname "br-n" drop
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state established,related accept
\t\toifname "br-a" jump into-br-a
\t\toifname "br-b" jump into-br-b
\t\toifname "br-c" jump into-br-c
\t\toifname "br-i" jump into-br-i
\t\toifname "br-n" jump into-br-n
\t\tiifname "br-i" drop
\t}
\tchain into-br-a {
\t\tiifname "br-a" accept
\t\tct status dnat accept
\t\tdrop
\t}
\tchain into-br-b {
\t\tiifname "br-b" accept
\t\tct status dnat accept
\t\tdrop
\t}
\tchain into-br-c {
\t\tiifname "br-c" drop
\t\tct status dnat accept
\t\tdrop
\t}
\tchain into-br-i {
\t\tiifname "br-i" accept
\t\tdrop
\t}
\tchain into-br-n {
\t\tiifname "br-n" accept
\t\tct status dnat accept
\t\tdrop
\t}
}
"""

EMPTY = """\
table ip dockserve
delete table ip dockserve
table ip dockserve {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tfib daddr type local jump published
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tfib daddr type local jump published-local
\t}
\tchain published-local {
\t\tjump published
\t}
\tchain published {
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t}
\tchain guard {
\t\ttype filter hook prerouting priority raw; policy accept;
\t}
\tchain guard-loopback {
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state established,related accept
\t}
}
"""


class RenderTests(SynchronousTestCase):
    def test_golden(self) -> None:
        """
        Every shape: DNAT per binding (loopback ones from the host only,
        other specific addresses before the wildcard ones), none for an
        internal network's container; per network the localhost and
        hairpin masquerades and, unless off, the outbound one; the guard
        against 127.0.0.0/8 from a bridge; forwarding into each bridge
        (icc, published, drop) and out of an internal one.
        """
        self.assertEqual(render(NETWORKS, BINDINGS), GOLDEN)

    def test_empty(self) -> None:
        """No networks, no bindings: the chains, empty, and still valid."""
        self.assertEqual(render([], []), EMPTY)

    def test_deterministic(self) -> None:
        """Any order, duplicates, C{""} for all addresses: the same text."""
        shuffled = random.Random(7)  # noqa: S311 - a repeatable order, no secret
        for _ in range(20):
            nets, binds = list(NETWORKS), [*BINDINGS, BINDINGS[0]]
            shuffled.shuffle(nets)
            shuffled.shuffle(binds)
            self.assertEqual(render(nets, binds), GOLDEN)
        blank = PortBinding("tcp", "", 18080, "10.10.1.2", 80, "other")
        self.assertEqual(render(NETWORKS, [blank, *BINDINGS[1:]]), GOLDEN)

    def test_unsafe(self) -> None:
        """What would not make a safe script is refused, not rendered."""
        bad_bridge = net("br a", "10.0.0.0/24")
        self.assertRaises(ValueError, render, [bad_bridge], [])
        for binding in (
            PortBinding("sctp", "0.0.0.0", 1, "10.0.0.2", 1),
            PortBinding("tcp", "::", 1, "10.0.0.2", 1),
            PortBinding("tcp", "0.0.0.0", 0, "10.0.0.2", 1),
            PortBinding("tcp", "0.0.0.0", 1, "10.0.0.2; drop", 1),
        ):
            self.assertRaises(ValueError, render, [], [binding])

    def test_bridge_names(self) -> None:
        """Interface names nft can quote and name a chain after."""
        for good in ("dockserve0", "br-0123456789ab", "my_br.1"):
            self.assertTrue(valid_bridge_name(good), good)
        for bad in ("", "x" * 16, 'a"b', "a b", "a/b", ".", "..", "lo", "a:b"):
            self.assertFalse(valid_bridge_name(bad), bad)

    def test_removal(self) -> None:
        """Removal declares the table first, so a missing one is no error."""
        self.assertEqual(removal(), "table ip dockserve\ndelete table ip dockserve\n")


class MessageTests(SynchronousTestCase):
    def test_nft_message(self) -> None:
        """nft's Error lines, else all it wrote, else its exit code."""
        err = (
            b"/dev/stdin:1:36-36: Error: syntax error, unexpected '}'\n"
            b"table ip dockserve { chain x { bad } }\n"
            b"                                   ^\n"
            b"/dev/stdin:2:1-1: Error: syntax error, unexpected end of file\n"
        )
        self.assertEqual(
            nft_message(Result(1, b"", err)),
            "/dev/stdin:1:36-36: Error: syntax error, unexpected '}'; "
            "/dev/stdin:2:1-1: Error: syntax error, unexpected end of file",
        )
        self.assertEqual(nft_message(Result(1, b"", b"oops\n")), "oops")
        self.assertEqual(nft_message(Result(3, b"", b"")), "nft exited with code 3")

    def test_forward_blockers(self) -> None:
        """
        Forward-hook base chains of other tables with a drop policy, in
        ip and inet; not ours, not accepting ones, not other hooks.
        """
        listing = (
            b'{"nftables": [{"metainfo": {"version": "1.0.6"}},'
            b' {"chain": {"family": "ip", "table": "filter", "name": "FORWARD",'
            b' "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},'
            b' {"chain": {"family": "inet", "table": "fw", "name": "fwd",'
            b' "hook": "forward", "policy": "drop"}},'
            b' {"chain": {"family": "ip", "table": "dockserve", "name": "forward",'
            b' "hook": "forward", "policy": "drop"}},'
            b' {"chain": {"family": "ip6", "table": "f6", "name": "f",'
            b' "hook": "forward", "policy": "drop"}},'
            b' {"chain": {"family": "ip", "table": "x", "name": "in",'
            b' "hook": "input", "policy": "drop"}},'
            b' {"chain": {"family": "ip", "table": "y", "name": "f",'
            b' "hook": "forward", "policy": "accept"}},'
            b' {"chain": {"family": "ip", "table": "y", "name": "regular"}}]}'
        )
        self.assertEqual(
            forward_blockers(listing), ["inet fw fwd", "ip filter FORWARD"]
        )
        self.assertEqual(forward_blockers(b"not json"), [])


class FakeNft:
    """Answers each run from a script of results; records argv and stdin."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bytes | None]] = []
        self.results: list[Result | Deferred[Result]] = []

    def __call__(
        self, _reactor: Any, argv: list[str], stdin: bytes | None, _env: Any
    ) -> Deferred[Result]:
        self.calls.append((argv, stdin))
        if self.results:
            result = self.results.pop(0)
            return result if isinstance(result, Deferred) else succeed(result)
        return succeed(Result(0, b"", b""))

    def scripts(self) -> list[bytes | None]:
        return [stdin for argv, stdin in self.calls if argv[-2:] == ["-f", "-"]]


def proc_sys(test: SynchronousTestCase, **values: str) -> Path:
    """A made-up /proc/sys with the files the firewall writes."""
    root = Path(test.mktemp())
    defaults = {
        "net/ipv4/ip_forward": "0",
        "net/bridge/bridge-nf-call-iptables": "0",
        "net/ipv4/conf/br-a/route_localnet": "0",
    }
    for key, value in {**defaults, **values}.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    return root


class FirewallTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.nft = FakeNft()
        self.sys = proc_sys(self)
        self.firewall = Firewall(None, proc_sys=self.sys, run=self.nft)

    def test_apply(self) -> None:
        """
        The rendered script goes to C{nft -f -}; the same state again runs
        nothing; a change runs again.
        """
        nets = NETWORKS[:2]
        self.successResultOf(self.firewall.apply(nets, BINDINGS[:1]))
        self.assertEqual(self.nft.calls[0][0], ["nft", "-f", "-"])
        self.assertEqual(self.nft.scripts(), [render(nets, BINDINGS[:1]).encode()])
        self.successResultOf(self.firewall.apply(list(reversed(nets)), BINDINGS[:1]))
        self.assertEqual(len(self.nft.scripts()), 1)
        self.successResultOf(self.firewall.apply(nets, []))
        self.assertEqual(len(self.nft.scripts()), 2)
        self.assertEqual(self.firewall.applied, render(nets, []))

    def test_failure(self) -> None:
        """
        nft's complaint is the error; nothing counts as applied, so the
        same state is tried again.
        """
        err = b"/dev/stdin:3:1-5: Error: Could not process rule: Invalid argument\n"
        self.nft.results.append(Result(1, b"", err))
        failure = self.failureResultOf(self.firewall.apply([], []), SystemError_)
        self.assertEqual(
            failure.value.message,
            "failed to program the firewall: "
            "/dev/stdin:3:1-5: Error: Could not process rule: Invalid argument",
        )
        self.assertIsNone(self.firewall.applied)
        self.successResultOf(self.firewall.apply([], []))
        self.assertEqual(len(self.nft.scripts()), 2)

    def test_no_nft(self) -> None:
        """Without nft at all: an error naming it."""

        def missing(_reactor: Any, _argv: list[str], _stdin: Any, _env: Any) -> Any:
            raise FileNotFoundError(2, "No such file or directory")

        firewall = Firewall(None, proc_sys=self.sys, run=missing)
        failure = self.failureResultOf(firewall.apply([], []), SystemError_)
        self.assertEqual(
            failure.value.message,
            "failed to program the firewall: Error: nft: No such file or directory",
        )

    def test_render_error(self) -> None:
        """A state that cannot be rendered fails without running nft."""
        bad = PortBinding("sctp", "0.0.0.0", 1, "10.0.0.2", 1)
        self.failureResultOf(self.firewall.apply([], [bad]), SystemError_)
        self.assertEqual(self.nft.calls, [])

    def test_serialised(self) -> None:
        """
        Calls take turns on the lock: the second runs when the first is
        done, and its state is what stays.
        """
        first: Deferred[Result] = Deferred()
        self.nft.results.append(first)
        one = self.firewall.apply([], BINDINGS[:1])
        two = self.firewall.apply([], [])
        self.assertEqual(len(self.nft.calls), 1)
        self.assertNoResult(one)
        first.callback(Result(0, b"", b""))
        self.successResultOf(one)
        self.successResultOf(two)
        self.assertEqual(self.firewall.applied, render([], []))

    def test_blockers(self) -> None:
        """
        When the set of bridges changes, other tables' forward chains
        with a drop policy are looked for and logged once.
        """
        listing = (
            b'{"nftables": [{"chain": {"family": "ip", "table": "filter",'
            b' "name": "FORWARD", "hook": "forward", "policy": "drop"}}]}'
        )
        self.nft.results += [Result(0, b"", b""), Result(0, listing, b"")]
        with capturedLogs() as events:
            self.successResultOf(self.firewall.apply(NETWORKS[:1], []))
        self.assertEqual(self.nft.calls[1][0], ["nft", "-j", "list", "chains"])
        self.assertEqual(self.firewall.blockers, ["ip filter FORWARD"])
        warned = [e for e in events if "ip filter FORWARD" in str(e.get("chains"))]
        self.assertEqual(len(warned), 1)
        self.successResultOf(self.firewall.apply(NETWORKS[:1], BINDINGS[:1]))
        self.assertEqual(len(self.nft.calls), 3)

    def test_remove(self) -> None:
        """
        Removal runs the tolerant script and forgets what was applied, so
        the next apply runs.
        """
        self.successResultOf(self.firewall.apply([], []))
        self.successResultOf(self.firewall.remove())
        self.assertEqual(self.nft.scripts()[-1], removal().encode())
        self.assertIsNone(self.firewall.applied)
        self.successResultOf(self.firewall.apply([], []))
        self.assertEqual(len(self.nft.scripts()), 3)


class SysctlTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.sys = proc_sys(self)
        self.state = Path(self.mktemp())
        self.firewall = Firewall(
            None, proc_sys=self.sys, state_file=self.state, run=FakeNft()
        )

    def read(self, key: str) -> str:
        return (self.sys / key).read_text().strip()

    def test_set_and_restore(self) -> None:
        """
        Forwarding, route_localnet on a bridge: set, what was there kept
        (also on disk, for a restarted daemon), put back by remove.
        """
        self.firewall.enable_forwarding()
        self.firewall.enable_route_localnet("br-a")
        self.assertEqual(self.read("net/ipv4/ip_forward"), "1")
        self.assertEqual(self.read("net/ipv4/conf/br-a/route_localnet"), "1")
        restarted = Firewall(
            None, proc_sys=self.sys, state_file=self.state, run=FakeNft()
        )
        restarted.enable_forwarding()
        self.successResultOf(restarted.remove())
        self.assertEqual(self.read("net/ipv4/ip_forward"), "0")
        self.assertEqual(self.read("net/ipv4/conf/br-a/route_localnet"), "0")
        self.assertFalse(self.state.exists())

    def test_already_set(self) -> None:
        """What was already 1 is left 1 at remove: it was not ours."""
        sys_dir = proc_sys(self, **{"net/ipv4/ip_forward": "1"})
        firewall = Firewall(None, proc_sys=sys_dir, run=FakeNft())
        firewall.enable_forwarding()
        self.successResultOf(firewall.remove())
        self.assertEqual((sys_dir / "net/ipv4/ip_forward").read_text().strip(), "1")

    def test_bridge_gone(self) -> None:
        """A bridge deleted before remove took its setting along: no error."""
        self.firewall.enable_route_localnet("br-a")
        shutil.rmtree(self.sys / "net/ipv4/conf/br-a")
        self.successResultOf(self.firewall.remove())

    def test_errors(self) -> None:
        """No such bridge, an unsafe name: errors naming the sysctl."""
        error = self.assertRaises(
            SystemError_, self.firewall.enable_route_localnet, "br-x"
        )
        self.assertEqual(
            error.message,
            "cannot set net.ipv4.conf.br-x.route_localnet=1: No such file or directory",
        )
        self.assertRaises(SystemError_, self.firewall.enable_route_localnet, "..")

    def test_icc_off(self) -> None:
        """
        A network with icc off turns bridge-nf-call-iptables on; without
        br_netfilter the table is applied all the same, and it is logged.
        """
        self.successResultOf(self.firewall.apply([net("br-c", "10.1.0.0/24")], []))
        self.assertEqual(self.read("net/bridge/bridge-nf-call-iptables"), "0")
        self.successResultOf(
            self.firewall.apply([net("br-c", "10.1.0.0/24", icc=False)], [])
        )
        self.assertEqual(self.read("net/bridge/bridge-nf-call-iptables"), "1")
        shutil.rmtree(self.sys / "net/bridge")
        firewall = Firewall(None, proc_sys=self.sys, run=FakeNft())
        with capturedLogs() as events:
            self.successResultOf(
                firewall.apply([net("br-c", "10.1.0.0/24", icc=False)], [])
            )
        self.assertTrue(any("not enforced" in e["log_format"] for e in events))
        self.assertIsNotNone(firewall.applied)


# --- the real table, in namespaces of the test's own --------------------------

#: A "container" process: answers every TCP connection (port argv[2]) and
#: UDP datagram (5353) with its name and the peer's address.
SERVER = textwrap.dedent(
    """
    import socket, sys, threading
    name, port = sys.argv[1], int(sys.argv[2])
    def udp():
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("0.0.0.0", 5353))
        while True:
            data, peer = u.recvfrom(100)
            u.sendto(f"{name} {peer[0]}".encode(), peer)
    threading.Thread(target=udp, daemon=True).start()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen()
    while True:
        c, peer = s.accept()
        c.sendall(f"{name} {peer[0]}".encode())
        c.close()
    """
)

#: Tries each argv target C{proto:host:port}; one line each: the answer,
#: or FAIL.
CLIENT = textwrap.dedent(
    """
    import socket, sys
    for target in sys.argv[1:]:
        proto, host, port = target.split(":")
        try:
            if proto == "tcp":
                s = socket.create_connection((host, int(port)), timeout=0.6)
            else:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.settimeout(0.6)
                s.sendto(b"?", (host, int(port)))
            print(s.recv(100).decode())
            s.close()
        except OSError as e:
            print("FAIL", e)
    """
)

#: The sysctls, set by the firewall's own code inside the lab's host.
SYSCTLS = textwrap.dedent(
    """
    import sys
    from dockserve.daemon.network.firewall import Firewall
    fw = Firewall(None)
    fw.enable_forwarding()
    fw.enable_bridge_netfilter()
    for bridge in sys.argv[1:]:
        fw.enable_route_localnet(bridge)
    """
)

HOST_IP, WORLD_IP = "198.51.100.2", "198.51.100.1"

#: Container namespaces: (name, bridge, address).
CONTAINERS = [
    ("a1", "br-a", "10.10.1.2"),
    ("a2", "br-a", "10.10.1.3"),
    ("b1", "br-b", "10.10.2.2"),
    ("i1", "br-i", "10.10.3.2"),
    ("i2", "br-i", "10.10.3.3"),
    ("c1", "br-c", "10.10.4.2"),
    ("c2", "br-c", "10.10.4.3"),
]

_ROOT = Path(__file__).resolve().parents[3]


def _run(argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False
    )


def _must(argv: Sequence[str]) -> str:
    result = _run(argv)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {result.stderr}")
    return result.stdout


def machine_state() -> tuple[str, list[str]]:
    """The machine's own ruleset and link names (this process's namespace)."""
    rules = _must(["nft", "list", "ruleset"])
    links = sorted(
        line.split()[0] for line in _must(["ip", "-br", "link"]).splitlines()
    )
    return rules, links


class Lab:
    """
    Namespaces C{dstest-<tag>-<role>}: C{h} (the daemon's host: bridges,
    uplink C{up0} 198.51.100.2), C{w} (the world, 198.51.100.1, with a
    route to the containers' subnets through the host), one per
    container. Everything is made with C{ip -n}, inside them.
    """

    def __init__(self, test: TestCase) -> None:
        self.test = test
        self.tag = f"fw{os.urandom(3).hex()}"
        self.files = Path(test.mktemp())
        self.files.mkdir()
        (self.files / "server.py").write_text(SERVER)
        (self.files / "client.py").write_text(CLIENT)
        self.host = self.add("h")
        self.world = self.add("w")
        _must(["ip", "-n", self.host, "link", "add", "up0", "type", "veth",
               "peer", "name", "w0", "netns", self.world])  # fmt: skip
        self.address(self.host, "up0", f"{HOST_IP}/24")
        self.address(self.world, "w0", f"{WORLD_IP}/24")
        _must(["ip", "-n", self.host, "route", "add", "default", "via", WORLD_IP])
        _must(["ip", "-n", self.world, "route", "add", "10.10.0.0/16", "via", HOST_IP])
        for network in NETWORKS:
            _must(
                ["ip", "-n", self.host, "link", "add", network.bridge, "type", "bridge"]
            )
            self.address(self.host, network.bridge, f"{network.gateway}/24")
        for name, bridge, address in CONTAINERS:
            self.container(name, bridge, address)
        self.serve(self.world, "world", 8000)

    def ns(self, role: str) -> str:
        return f"dstest-{self.tag}-{role}"

    def add(self, role: str) -> str:
        name = self.ns(role)
        _must(["ip", "netns", "add", name])
        self.test.addCleanup(_run, ["ip", "netns", "del", name])
        _must(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def address(self, ns: str, dev: str, cidr: str) -> None:
        _must(["ip", "-n", ns, "addr", "add", cidr, "dev", dev])
        _must(["ip", "-n", ns, "link", "set", dev, "up"])

    def container(self, name: str, bridge: str, address: str) -> None:
        ns, veth = self.add(name), f"v{name}"
        _must(["ip", "-n", self.host, "link", "add", veth, "type", "veth",
               "peer", "name", "eth0", "netns", ns])  # fmt: skip
        _must(["ip", "-n", self.host, "link", "set", veth, "master", bridge, "up"])
        _must(["ip", "-n", self.host, "link", "set", veth, "type", "bridge_slave",
               "hairpin", "on"])  # fmt: skip
        self.address(ns, "eth0", f"{address}/24")
        if not bridge.endswith("-i"):
            gateway = str(IPv4Network(f"{address}/24", strict=False)[1])
            _must(["ip", "-n", ns, "route", "add", "default", "via", gateway])
        self.serve(ns, name, 80)

    def serve(self, ns: str, name: str, port: int) -> None:
        argv = ["ip", "netns", "exec", ns, sys.executable,
                str(self.files / "server.py"), name, str(port)]  # fmt: skip
        process = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
        self.test.addCleanup(process.wait)
        self.test.addCleanup(process.kill)
        for _ in range(100):
            if self.ask(ns, f"tcp:127.0.0.1:{port}")[0].startswith(name):
                return
        raise AssertionError(f"server {name} did not start")

    def probe(self, ns: str, rule: str) -> None:
        """Count what C{rule} matches on C{ns}'s input hook."""
        hook = "{ type filter hook input priority 0; policy accept; }"
        _must(["ip", "netns", "exec", ns, "nft", "add", "table", "ip", "probe"])
        _must(["ip", "netns", "exec", ns, "nft", "add", "chain", "ip", "probe",
               "input", hook])  # fmt: skip
        _must(["ip", "netns", "exec", ns, "nft", "add", "rule", "ip", "probe",
               "input", *rule.split()])  # fmt: skip

    def probed(self, ns: str) -> int:
        """The packets L{probe} counted."""
        listing = _must(
            ["ip", "netns", "exec", ns, "nft", "list", "table", "ip", "probe"]
        )
        return sum(int(n) for n in re.findall(r"packets (\d+)", listing))

    def route_loopback(self, ns: str, dev: str, via: str) -> None:
        """Make C{ns} send what it addresses to 127.0.0.0/8 out to C{via}."""
        for route in ("127.0.0.0/8", "127.0.0.1"):
            _must(["ip", "-n", ns, "route", "del", "local", route, "table", "local"])
        _must(["ip", "netns", "exec", ns, "sysctl", "-qw",
               f"net.ipv4.conf.{dev}.route_localnet=1"])  # fmt: skip
        _must(["ip", "-n", ns, "route", "add", "127.0.0.0/8", "via", via])

    def ask(self, ns: str, *targets: str) -> list[str]:
        argv = ["ip", "netns", "exec", ns, sys.executable,
                str(self.files / "client.py"), *targets]  # fmt: skip
        return _must(argv).splitlines()

    def in_host(self, argv: Sequence[str]) -> str:
        return _must(["ip", "netns", "exec", self.host, *argv])


class RealTableTests(TestCase):
    """
    The rendered table in a real kernel, inside the lab's namespaces only.
    """

    timeout = 180

    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("network namespaces need root")
        for tool in ("ip", "nft"):
            if shutil.which(tool) is None:
                raise SkipTest(f"{tool} is not installed")
        before = machine_state()
        # Registered first, so it runs last: after every namespace is gone.
        self.addCleanup(lambda: self.assertEqual(machine_state(), before))
        self.lab = Lab(self)
        _must(["ip", "netns", "exec", self.lab.host, sys.executable, "-c", SYSCTLS,
               *(n.bridge for n in NETWORKS)])  # fmt: skip
        self.nft = ("ip", "netns", "exec", self.lab.host, "nft")
        self.firewall = self.make_firewall()

    def make_firewall(self) -> Firewall:
        # Never this machine's /proc/sys: the lab's are set above.
        return Firewall(reactor, nft=self.nft, proc_sys=proc_sys(self))

    def listing(self) -> str:
        return self.lab.in_host(["nft", "list", "table", "ip", "dockserve"])

    def check(self, ns: str, expected: dict[str, str]) -> None:
        """Each target's answer starts with what is expected (or FAIL)."""
        answers = self.lab.ask(ns, *expected)
        got = {
            target: answer[: len(want)]
            for (target, want), answer in zip(expected.items(), answers, strict=True)
        }
        self.assertEqual(got, expected, ns)

    async def test_paths(self) -> None:
        """
        Published ports from the host (its own address and 127.0.0.1),
        the world (client address kept) and containers (hairpin, also to
        itself, and from another network); masquerade toward the world
        with the uplink address; isolation between bridges and from the
        world to unpublished ports; internal networks reach only each
        other; icc off drops container to container.
        """
        await self.firewall.apply(NETWORKS, BINDINGS)
        lab, h = self.lab, HOST_IP
        self.check(lab.host, {
            "tcp:127.0.0.1:18080": "a1 10.10.1.1",
            f"tcp:{h}:18080": f"a1 {h}",
            "tcp:127.0.0.1:18081": "a1 10.10.1.1",
            "udp:127.0.0.1:18053": "a1 10.10.1.1",
            f"tcp:{h}:18082": "b1",
            "tcp:127.0.0.1:18082": "FAIL",
            f"tcp:{h}:18083": "FAIL",
            "tcp:10.10.3.2:80": "i1 10.10.3.1",
        })  # fmt: skip
        self.check(lab.world, {
            f"tcp:{h}:18080": f"a1 {WORLD_IP}",
            f"udp:{h}:18053": f"a1 {WORLD_IP}",
            f"tcp:{h}:18081": "FAIL",
            f"tcp:{h}:18084": f"c1 {WORLD_IP}",
            "tcp:10.10.1.2:80": "FAIL",
        })  # fmt: skip
        self.check(lab.ns("a2"), {
            f"tcp:{h}:18080": "a1 10.10.1.1",
            "tcp:10.10.1.1:18080": "a1 10.10.1.1",
            "tcp:10.10.1.2:80": "a1 10.10.1.3",
            f"tcp:{WORLD_IP}:8000": f"world {h}",
            "tcp:10.10.2.2:80": "FAIL",
            "tcp:10.10.3.2:80": "FAIL",
        })  # fmt: skip
        self.check(lab.ns("a1"), {f"tcp:{h}:18080": "a1 10.10.1.1"})
        self.check(lab.ns("b1"), {
            "tcp:10.10.1.2:80": "FAIL",
            f"tcp:{h}:18080": "a1",
            f"tcp:{WORLD_IP}:8000": f"world {h}",
        })  # fmt: skip
        self.check(lab.ns("i1"), {
            "tcp:10.10.3.3:80": "i2 10.10.3.2",
            "tcp:10.10.3.1:80": "FAIL",
            f"tcp:{WORLD_IP}:8000": "FAIL",
            "tcp:10.10.1.2:80": "FAIL",
        })  # fmt: skip
        self.check(lab.ns("c1"), {
            "tcp:10.10.4.3:80": "FAIL",
            f"tcp:{WORLD_IP}:8000": f"world {h}",
        })  # fmt: skip

    async def test_loopback_from_outside(self) -> None:
        """
        A packet for 127.0.0.1 from outside the host (a neighbour that
        routes 127.0.0.0/8 to it; a container, through its gateway) is
        neither DNATed to a port published on 127.0.0.1 (dockerd's DROP
        REMOTE LOOPBACK) nor taken by the host as its own loopback traffic,
        although the bridges have route_localnet on. Counted where it
        would arrive: TCP can fail for other reasons (the answer's source).
        """
        await self.firewall.apply(NETWORKS, BINDINGS)
        lab = self.lab
        arrived = 'iifname != "lo" ip daddr 127.0.0.0/8 counter'
        lab.probe(lab.host, arrived)
        lab.probe(lab.ns("a1"), 'iifname "eth0" tcp dport 80 counter')
        lab.route_loopback(lab.world, "w0", HOST_IP)
        lab.route_loopback(lab.ns("a2"), "eth0", "10.10.1.1")
        for ns in (lab.world, lab.ns("a2")):
            self.check(
                ns, {"tcp:127.0.0.1:18081": "FAIL", "udp:127.0.0.1:5353": "FAIL"}
            )
        self.assertEqual(lab.probed(lab.host), 0)
        self.assertEqual(lab.probed(lab.ns("a1")), 0)

    async def test_restart_same_listing(self) -> None:
        """
        A restarted daemon (a new Firewall, the state in another order)
        leaves C{nft list table} byte-identical; an unchanged apply runs
        nothing; removal leaves the lab's ruleset empty, twice over.
        """
        await self.firewall.apply(NETWORKS, BINDINGS)
        before = self.listing()
        restarted = self.make_firewall()
        await restarted.apply(list(reversed(NETWORKS)), list(reversed(BINDINGS)))
        self.assertEqual(self.listing(), before)
        self.assertIn("dnat to 10.10.1.2:80", before)
        await restarted.remove()
        await restarted.remove()
        self.assertEqual(self.lab.in_host(["nft", "list", "ruleset"]), "")

    async def test_udp_flush(self) -> None:
        """
        A UDP flow through a published port outlives its rule; the flush
        of L{dockserve.daemon.network.ports} forgets it (run with the
        real conntrack, in the lab's host).
        """
        if shutil.which("conntrack") is None:
            raise SkipTest("conntrack is not installed")
        await self.firewall.apply(NETWORKS, BINDINGS)
        self.check(self.lab.world, {f"udp:{HOST_IP}:18053": f"a1 {WORLD_IP}"})
        listing = ["conntrack", "-L", "-p", "udp", "--orig-port-dst", "18053"]
        self.assertIn(" src=10.10.1.2 ", self.lab.in_host(listing))
        await self.firewall.apply(NETWORKS, BINDINGS[2:])
        conntrack = ("ip", "netns", "exec", self.lab.host, "conntrack")
        await flush_udp_conntrack(reactor, BINDINGS[1:2], conntrack=conntrack)
        self.assertEqual(self.lab.in_host(listing), "")

    async def test_other_firewall(self) -> None:
        """
        Another table's FORWARD with policy drop is found (and logged);
        it does drop the containers' forwarded traffic, as the module
        says: ours cannot override it.
        """
        chain = "{ type filter hook forward priority filter; policy drop; }"
        self.lab.in_host(["nft", "add", "table", "ip", "filter"])
        self.lab.in_host(["nft", "add", "chain", "ip", "filter", "FORWARD", chain])
        await self.firewall.apply(NETWORKS, BINDINGS)
        self.assertEqual(self.firewall.blockers, ["ip filter FORWARD"])
        self.check(self.lab.ns("a2"), {f"tcp:{WORLD_IP}:8000": "FAIL"})

    async def test_refused(self) -> None:
        """
        A script the kernel refuses (here a jump to no chain, edited in on
        the way to nft): nft's own message, and the table as it was, the
        transaction being all or nothing.
        """
        await self.firewall.apply(NETWORKS[:1], [])
        before = self.listing()
        edit = 'sed "s/jump published$/jump nowhere/" | nft "$@"'
        broken = Firewall(
            reactor,
            nft=("ip", "netns", "exec", self.lab.host, "sh", "-c", edit, "nft"),
            proc_sys=proc_sys(self),
        )
        with self.assertRaises(SystemError_) as raised:
            await broken.apply(NETWORKS, BINDINGS)
        self.assertIn("Error: Could not process rule", raised.exception.message)
        self.assertTrue(raised.exception.message.startswith("failed to program"))
        self.assertEqual(self.listing(), before)
