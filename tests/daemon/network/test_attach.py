# -*- test-case-name: tests.daemon.network.test_attach -*-
"""
Tests for L{dockserve.daemon.network.attach}, with every real part replaced
by a recorder: the order of the steps a start and an exit take.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.network.attach import Attachments, Request
from dockserve.daemon.network.model import Endpoint, PortBinding
from dockserve.daemon.network.service import NetworkService

if TYPE_CHECKING:
    from dockserve.daemon.network.ports import PortRequest


class _Parts:
    """Every part of the plumbing, writing what it was asked into C{log}."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.held: dict[str, list[PortBinding]] = {}

    # netns
    def create(self, path: Path) -> Deferred[None]:
        self.log.append(("netns", path.name))
        return succeed(None)

    def remove(self, path: Path) -> Deferred[None]:
        self.log.append(("netns-rm", path.name))
        return succeed(None)

    # cni
    def loopback(self, _path: Path) -> Deferred[None]:
        return succeed(None)

    def add(self, _path: Path, cid: str, ifname: str, spec: Any, **_: Any) -> Any:
        self.log.append(("cni-add", ifname))
        return succeed(
            Endpoint(spec.id, cid, ifname, IPv4Address("172.17.0.2"), 16,
                     IPv4Address("172.17.0.1"), "02:42:ac:11:00:02")
        )  # fmt: skip

    def delete(self, _path: Any, _cid: str, ifname: str, _spec: Any) -> Any:
        self.log.append(("cni-del", ifname))
        return succeed(None)

    # firewall
    def enable_forwarding(self) -> None:
        pass

    def enable_route_localnet(self, _bridge: str) -> None:
        pass

    def enable_bridge_netfilter(self) -> None:
        pass

    def apply(self, _networks: Any, bindings: list[PortBinding]) -> Deferred[None]:
        self.log.append(("firewall", sorted(b.host_port for b in bindings)))
        return succeed(None)

    # ports
    def reserve(self, cid: str, requests: list[PortRequest]) -> list[PortBinding]:
        bound = [
            PortBinding(r.proto, "0.0.0.0", r.host_port, "172.17.0.2",
                        r.container_port, cid)
            for r in requests
        ]  # fmt: skip
        self.held[cid] = bound
        return bound

    def release(self, cid: str) -> list[PortBinding]:
        return self.held.pop(cid, [])

    def bindings(self, _cid: str | None = None) -> list[PortBinding]:
        return [b for held in self.held.values() for b in held]

    # flush_udp
    def flush(self, bindings: list[PortBinding]) -> Deferred[None]:
        self.log.append(("flush", [(b.proto, b.host_port) for b in bindings]))
        return succeed(None)


class UDPFlowTests(SynchronousTestCase):
    def setUp(self) -> None:
        root = Path(self.mktemp())
        self.networks = NetworkService(root / "network", routes=list)
        self.networks.restore()
        self.parts = _Parts()
        self.attachments = Attachments(
            root / "exec", self.networks, netns=self.parts, cni=self.parts,
            firewall=self.parts, ports=self.parts, dns=None,
            flush_udp=self.parts.flush,
        )  # fmt: skip

    def start(self, cid: str, ports: list[tuple[str, str, int, int, int]]) -> None:
        bridge = self.networks.find("bridge")
        request = Request(cid, f"/{cid}", cid, [(bridge, [], "", "")], ports)
        self.successResultOf(Deferred.fromCoroutine(self.attachments.attach(request)))

    def test_udp_flushed_after_publishing_and_after_release(self) -> None:
        """
        A UDP port's old flows are forgotten once the firewall publishes it
        and again once it no longer does: never before the rule changes.
        """
        self.start("c1", [("udp", "", 5353, 0, 53), ("tcp", "", 8080, 0, 80)])
        self.assertEqual(
            [e for e in self.parts.log if e[0] in {"firewall", "flush"}],
            [("firewall", [5353, 8080]), ("flush", [("udp", 5353), ("tcp", 8080)])],
        )
        self.parts.log.clear()
        self.successResultOf(Deferred.fromCoroutine(self.attachments.detach("c1")))
        self.assertEqual(
            [e for e in self.parts.log if e[0] in {"firewall", "flush"}],
            [("firewall", []), ("flush", [("udp", 5353), ("tcp", 8080)])],
        )

    def test_tcp_only_not_flushed(self) -> None:
        """TCP needs no flush: conntrack is not run at all."""
        self.start("c2", [("tcp", "", 8080, 0, 80)])
        self.successResultOf(Deferred.fromCoroutine(self.attachments.detach("c2")))
        self.assertNotIn("flush", [e[0] for e in self.parts.log])
