# -*- test-case-name: tests.daemon.network.test_restore_sweep -*-
"""
Tests for what a daemon restart frees of networking that a crash in the
middle of a start left (L{dockserve.daemon.network.attach.Attachments.restore}
and L{dockserve.daemon.network.cni.CNI.allocations}), for starts that wait
for the restore, and for a network removed while a container is leaving it.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.network.attach import Attachments, Request
from dockserve.daemon.network.cni import CNI, Allocation, Attachment
from dockserve.daemon.network.model import Endpoint
from dockserve.daemon.network.service import NetworkService
from dockserve.errors import NotFound
from tests.daemon.network.test_attach import _Parts

RUNNING = "a" * 64
CRASHED = "b" * 64


def _endpoint(network_id: str, cid: str, ifname: str, ip: str) -> Endpoint:
    return Endpoint(network_id, cid, ifname, IPv4Address(ip), 16,
                    IPv4Address("172.17.0.1"), "02:42:ac:11:00:02")  # fmt: skip


class AllocationsTests(SynchronousTestCase):
    def test_read_from_host_local(self) -> None:
        """
        Each address file of host-local (C{<id>\\r\\n<ifname>}) is an
        L{Allocation}; its lock and last-reserved files are not.
        """
        state = Path(self.mktemp())
        ipam = state / "ipam" / ("f" * 64)
        ipam.mkdir(parents=True)
        (ipam / "172.18.0.2").write_bytes(f"{CRASHED}\r\neth1".encode())
        (ipam / "lock").write_text("")
        (ipam / "last_reserved_ip.0").write_text("172.18.0.2")
        cni = CNI(Clock(), state_dir=state)
        self.assertEqual(
            cni.allocations(),
            [Allocation("f" * 64, CRASHED, "eth1", IPv4Address("172.18.0.2"))],
        )

    def test_none(self) -> None:
        """No address book at all: nothing held."""
        self.assertEqual(CNI(Clock(), state_dir=Path(self.mktemp())).allocations(), [])


class _CrashedParts(_Parts):
    """The parts, with what CNI holds after a crash."""

    def __init__(self) -> None:
        super().__init__()
        self.cached: list[Attachment] = []
        self.allocated: list[Allocation] = []

    def attachments(self) -> list[Attachment]:
        return list(self.cached)

    def allocations(self) -> list[Allocation]:
        return list(self.allocated)

    def delete(self, _path: Any, cid: str, ifname: str, spec: Any) -> Any:
        self.log.append(("cni-del", cid[:1], ifname, spec.name))
        return succeed(None)

    def attach(self, _cid: str, _path: Path) -> Deferred[None]:
        return succeed(None)

    def detach(self, _cid: str) -> Deferred[None]:
        return succeed(None)


class RestoreSweepTests(SynchronousTestCase):
    def setUp(self) -> None:
        root = Path(self.mktemp())
        self.exec_root = root / "exec"
        self.networks = NetworkService(root / "network", routes=list)
        self.networks.restore()
        self.bridge = self.networks.find("bridge")
        self.parts = _CrashedParts()

    def attachments(self, *, restoring: bool = False) -> Attachments:
        return Attachments(
            self.exec_root, self.networks, netns=self.parts, cni=self.parts,
            firewall=self.parts, ports=self.parts, dns=self.parts,
            restoring=restoring,
        )  # fmt: skip

    def state(self, cid: str, ifname: str, ip: str) -> None:
        """The state file a finished start writes."""
        directory = self.exec_root / "network"
        directory.mkdir(parents=True, exist_ok=True)
        value = {
            "Name": "web", "Hostname": cid[:12],
            "Netns": str(self.exec_root / "netns" / cid),
            "Joined": [{"NetworkID": self.bridge.id, "IfName": ifname, "IP": ip,
                        "Prefix": 16, "Gateway": "172.17.0.1",
                        "Mac": "02:42:ac:11:00:02"}],
            "Ports": [],
        }  # fmt: skip
        (directory / f"{cid}.json").write_text(json.dumps(value))

    def test_crash_leftovers_freed(self) -> None:
        """
        restore DELs the cached ADDs and the host-local addresses no
        running container's state names: a start cut short (no state at
        all) and a connect cut short on a running one (an interface its
        state lacks); what the running container has is kept, and the
        namespace file of the one cut short goes.
        """
        bridge = self.bridge.id
        self.state(RUNNING, "eth0", "172.17.0.2")
        (self.exec_root / "network" / "sysctls.json").write_text("{}")
        netns = self.exec_root / "netns"
        netns.mkdir(parents=True)
        for cid in (RUNNING, CRASHED):
            (netns / cid).write_text("")
        self.parts.cached = [
            Attachment(bridge, RUNNING, "eth0",
                       _endpoint(bridge, RUNNING, "eth0", "172.17.0.2")),
            Attachment(bridge, RUNNING, "eth1",
                       _endpoint(bridge, RUNNING, "eth1", "172.17.0.4")),
            Attachment(bridge, CRASHED, "eth0",
                       _endpoint(bridge, CRASHED, "eth0", "172.17.0.3")),
        ]  # fmt: skip
        self.parts.allocated = [
            Allocation(bridge, RUNNING, "eth0", IPv4Address("172.17.0.2")),
            Allocation(bridge, CRASHED, "eth0", IPv4Address("172.17.0.3")),
            Allocation(bridge, CRASHED, "eth1", IPv4Address("172.17.0.5")),
            Allocation("e" * 64, CRASHED, "eth2", IPv4Address("10.0.0.2")),
        ]
        attachments = self.attachments()
        self.successResultOf(
            Deferred.fromCoroutine(attachments.restore({RUNNING: "web"}))
        )
        self.assertEqual(
            [e for e in self.parts.log if e[0] in {"cni-del", "netns-rm"}],
            [
                ("cni-del", "a", "eth1", "bridge"),
                ("cni-del", "b", "eth0", "bridge"),
                ("cni-del", "b", "eth1", "bridge"),
                ("netns-rm", CRASHED),
            ],
        )
        att = attachments.of(RUNNING)
        assert att is not None
        self.assertEqual([j.endpoint.ifname for j in att.joined.values()], ["eth0"])
        self.assertIsNone(attachments.of("sysctls"))

    def test_attach_waits_for_restore(self) -> None:
        """
        With a restore to come, a start (its restart policy's, at boot) is
        plumbed only once the restore is done; without one, at once.
        """
        attachments = self.attachments(restoring=True)
        request = Request(CRASHED, "web", "web", [(self.bridge, [], "", "")])
        started = Deferred.fromCoroutine(attachments.attach(request))
        self.assertNoResult(started)
        self.assertNotIn(("netns", CRASHED), self.parts.log)
        self.successResultOf(Deferred.fromCoroutine(attachments.restore({})))
        self.successResultOf(started)
        self.assertIn(("netns", CRASHED), self.parts.log)
        other = Request(RUNNING, "db", "db", [(self.bridge, [], "", "")])
        self.successResultOf(Deferred.fromCoroutine(self.attachments().attach(other)))


class _SlowParts(_CrashedParts):
    """The parts, with CNI DELs (and ADDs, if asked) that end when told."""

    def __init__(self) -> None:
        super().__init__()
        self.deleting: list[Deferred[None]] = []
        self.adding: list[Deferred[None]] | None = None

    def add(self, path: Path, cid: str, ifname: str, spec: Any, **kw: Any) -> Any:
        made = super().add(path, cid, ifname, spec, **kw)
        if self.adding is None:
            return made
        self.adding.append(Deferred())
        return self.adding[-1].addCallback(lambda _: made)

    def delete(self, _path: Any, cid: str, ifname: str, spec: Any) -> Any:
        self.log.append(("cni-del", cid[:1], ifname, spec.name))
        self.deleting.append(Deferred())
        return self.deleting[-1]

    def remove_bridge(self, spec: Any) -> Deferred[None]:
        self.log.append(("bridge-rm", spec.name))
        return succeed(None)


class LeavingTests(SynchronousTestCase):
    def setUpParts(self) -> tuple[NetworkService, _SlowParts, Attachments, Any]:
        root = Path(self.mktemp())
        networks = NetworkService(root / "network", routes=list)
        networks.restore()
        parts = _SlowParts()
        attachments = Attachments(
            root / "exec", networks, netns=parts, cni=parts, firewall=parts,
            ports=parts, dns=parts,
        )  # fmt: skip
        rec = networks.create({"Name": "appnet"})
        return networks, parts, attachments, networks.find(rec["Id"])

    def test_network_removed_while_joining(self) -> None:
        """
        A network removed while a start's ADD on it is under way (docker
        rm -f of a container its restart policy is starting, then network
        rm): the start fails with dockerd's 'not found', its address is
        freed, and the bridge goes only after that.
        """
        networks, parts, attachments, net = self.setUpParts()
        parts.adding = []
        request = Request(CRASHED, "web", "web", [(net, [], "", "")])
        starting = Deferred.fromCoroutine(attachments.attach(request))
        self.successResultOf(networks.remove("appnet"))
        forgotten = Deferred.fromCoroutine(attachments.forget_network(net))
        self.assertNoResult(forgotten)
        parts.adding[0].callback(None)
        self.assertNoResult(forgotten)
        parts.deleting[0].callback(None)
        self.assertEqual(
            self.failureResultOf(starting, NotFound).value.message,
            f"network {net.id} not found",
        )
        self.successResultOf(forgotten)
        self.assertEqual(
            [e[:2] for e in parts.log if e[0] in {"cni-add", "cni-del", "bridge-rm"}],
            [("cni-add", "eth0"), ("cni-del", "b"), ("bridge-rm", "appnet")],
        )
        self.assertIsNone(attachments.of(CRASHED))

    def test_start_on_removed_network(self) -> None:
        """A start whose network is gone by its turn plumbs nothing."""
        networks, parts, attachments, net = self.setUpParts()
        self.successResultOf(networks.remove("appnet"))
        request = Request(CRASHED, "web", "web", [(net, [], "", "")])
        self.failureResultOf(
            Deferred.fromCoroutine(attachments.attach(request)), NotFound
        )
        self.assertEqual(parts.log, [])

    def test_network_removed_while_leaving(self) -> None:
        """
        A network removed while a container's detach is under way (docker
        rm -f answers first; compose down removes the network next): the
        container's DEL on it still runs, and the bridge goes after it.
        """
        networks, parts, attachments, net = self.setUpParts()
        request = Request(CRASHED, "web", "web", [(net, [], "", "")])
        self.successResultOf(Deferred.fromCoroutine(attachments.attach(request)))
        leaving = Deferred.fromCoroutine(attachments.detach(CRASHED))
        self.assertEqual(attachments.users(net.id), [])
        removing = networks.remove("appnet")
        forgotten = Deferred.fromCoroutine(attachments.forget_network(net))
        self.assertNoResult(forgotten)
        self.assertNotIn(("bridge-rm", "appnet"), parts.log)
        parts.deleting[0].callback(None)
        self.successResultOf(leaving)
        self.successResultOf(forgotten)
        self.successResultOf(removing)
        self.assertEqual(
            [e for e in parts.log if e[0] in {"cni-del", "bridge-rm"}],
            [("cni-del", "b", "eth0", "appnet"), ("bridge-rm", "appnet")],
        )
