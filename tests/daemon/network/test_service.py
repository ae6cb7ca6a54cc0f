"""Tests for L{dockserve.daemon.network.service}: networks as dockerd keeps them."""

from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from twisted.internet.defer import succeed
from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.network.records import predefined_id
from dockserve.daemon.network.service import NetworkService
from dockserve.errors import Conflict, Forbidden, InvalidParameter, NotFound


class _Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.routes = [IPv4Network("0.0.0.0/0"), IPv4Network("10.0.2.0/24")]
        self.root = Path(self.mktemp())
        self.events: list[tuple[str, str, dict[str, str]]] = []
        self.users: dict[str, list[str]] = {}
        self.forgotten: list[str] = []
        self.service = self.make()

    def make(self, *, bridge: bool = True) -> NetworkService:
        def publish(type_: str, action: str, actor: str, attrs: Any) -> None:
            self.assertEqual(type_, "network")
            self.events.append((action, actor, dict(attrs)))

        service = NetworkService(
            self.root, bridge_enabled=bridge, publish=publish,
            routes=lambda: list(self.routes), now=lambda: 1_765_000_000.0,
        )  # fmt: skip
        service.in_use = lambda nid: self.users.get(nid, [])
        service.forget = lambda rec: succeed(self.forgotten.append(rec.bridge))
        service.restore()
        return service


class PredefinedTests(_Base):
    def test_listed(self) -> None:
        """bridge (172.17.0.0/16 on dockserve0), host and none, as dockerd."""
        listed = {n["Name"]: n for n in self.service.list_networks({})}
        self.assertEqual(sorted(listed), ["bridge", "host", "none"])
        bridge = listed["bridge"]
        self.assertEqual(bridge["Driver"], "bridge")
        wanted = [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
        self.assertEqual(bridge["IPAM"]["Config"], wanted)
        self.assertEqual(bridge["Options"]["com.docker.network.bridge.name"],
                         "dockserve0")  # fmt: skip
        self.assertEqual(listed["none"]["Driver"], "null")
        self.assertEqual(bridge["Id"], predefined_id("bridge"))

    def test_bridge_none(self) -> None:
        """--bridge none: no bridge network, as dockerd."""
        names = [n["Name"] for n in self.make(bridge=False).list_networks({})]
        self.assertEqual(sorted(names), ["host", "none"])

    def test_avoids_host_routes(self) -> None:
        """A host route in 172.17/16 moves a new default bridge to 172.18/16."""
        self.root = Path(self.mktemp())
        self.routes = [IPv4Network("172.17.5.0/24")]
        bridge = self.make().inspect("bridge")
        self.assertEqual(bridge["IPAM"]["Config"][0]["Subnet"], "172.18.0.0/16")

    def test_kept_across_restarts(self) -> None:
        """
        The default bridge keeps its subnet at a restart, though its own
        route is then the host's (running containers keep their network).
        """
        self.routes = [IPv4Network("172.17.0.0/16")]
        bridge = self.make().inspect("bridge")
        self.assertEqual(bridge["IPAM"]["Config"][0]["Subnet"], "172.17.0.0/16")

    def test_not_removable(self) -> None:
        for name in ("bridge", "host", "none"):
            error = self.assertRaises(Forbidden, self._remove, name)
            self.assertEqual(
                error.message, f"{name} is a pre-defined network and cannot be removed"
            )

    def _remove(self, name: str) -> None:
        self.successResultOf(self.service.remove(name))


class CreateTests(_Base):
    def test_create(self) -> None:
        """The first free pool after the default bridge; a record; an event."""
        made = self.service.create({"Name": "appnet", "Labels": {"a": "b"}})
        self.assertEqual(made["Warning"], "")
        net = self.service.inspect("appnet")
        self.assertEqual(net["Id"], made["Id"])
        wanted = [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]
        self.assertEqual(net["IPAM"]["Config"], wanted)
        self.assertEqual(net["Options"], {})
        self.assertEqual(net["Labels"], {"a": "b"})
        self.assertEqual(net["Created"], "2025-12-06T05:46:40Z")
        created = ("create", made["Id"], {"name": "appnet", "type": "bridge"})
        self.assertEqual(self.events, [created])
        # Kept across a restart, with its subnet.
        again = self.make().inspect(made["Id"][:12])
        self.assertEqual(again["IPAM"], net["IPAM"])

    def test_options(self) -> None:
        """--subnet, --gateway, --ip-range, --internal, --attachable, bridge name."""
        self.service.create({
            "Name": "custom", "Internal": True, "Attachable": True,
            "Options": {"com.docker.network.bridge.name": "mybr0"},
            "IPAM": {"Config": [{"Subnet": "10.9.0.0/16", "Gateway": "10.9.0.254",
                                 "IPRange": "10.9.1.0/24"}]},
        })  # fmt: skip
        net = self.service.inspect("custom")
        self.assertEqual(net["IPAM"]["Config"],
                         [{"Subnet": "10.9.0.0/16", "IPRange": "10.9.1.0/24",
                           "Gateway": "10.9.0.254"}])  # fmt: skip
        self.assertTrue(net["Internal"])
        self.assertTrue(net["Attachable"])
        rec = self.service.find("custom")
        self.assertEqual(rec.bridge, "mybr0")
        self.assertEqual(str(rec.spec.ip_range), "10.9.1.0/24")

    def test_ipam_kept(self) -> None:
        """
        Auxiliary addresses and IPAM options come back as sent (options
        null when none were), across a restart; whether the subnet was the
        user's is kept; an auxiliary address outside the subnet is refused.
        """
        self.service.create({
            "Name": "aux", "IPAM": {
                "Options": {"x": "y"},
                "Config": [{"Subnet": "10.8.0.0/24",
                            "AuxiliaryAddresses": {"r": "10.8.0.5"}}],
            },
        })  # fmt: skip
        self.service.create({"Name": "pooled"})
        again = self.make()
        net = again.inspect("aux")
        self.assertEqual(net["IPAM"]["Options"], {"x": "y"})
        self.assertEqual(
            net["IPAM"]["Config"],
            [{"Subnet": "10.8.0.0/24", "Gateway": "10.8.0.1",
              "AuxiliaryAddresses": {"r": "10.8.0.5"}}],
        )  # fmt: skip
        self.assertIsNone(again.inspect("pooled")["IPAM"]["Options"])
        self.assertTrue(again.find("aux").user_subnet)
        self.assertFalse(again.find("pooled").user_subnet)
        bad = {"Subnet": "10.7.0.0/24", "AuxiliaryAddresses": {"r": "10.6.0.5"}}
        error = self.assertRaises(
            InvalidParameter,
            self.service.create, {"Name": "bad", "IPAM": {"Config": [bad]}},
        )  # fmt: skip
        self.assertIn("10.6.0.5", error.message)

    def test_errors(self) -> None:
        """dockerd's errors: duplicate, overlap, bad subnet, unknown driver."""
        self.service.create({"Name": "appnet"})
        cases = [
            ({"Name": "appnet"}, Conflict, "network with name appnet already exists"),
            ({"Name": "x", "IPAM": {"Config": [{"Subnet": "172.18.0.0/24"}]}},
             Forbidden,
             "Pool overlaps with other one on this address space"),
            ({"Name": "x", "IPAM": {"Config": [{"Subnet": "bogus"}]}},
             InvalidParameter, "Invalid subnet bogus : invalid CIDR address: bogus"),
            ({"Name": "x", "Driver": "foo"}, NotFound, 'plugin "foo" not found'),
            ({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.1.0.0/16",
                                                "Gateway": "10.2.0.1"}]}},
             InvalidParameter, "gateway address 10.2.0.1 does not belong to subnet"),
            ({"Name": ""}, InvalidParameter, "network name is empty"),
        ]  # fmt: skip
        for body, kind, message in cases:
            error = self.assertRaises(kind, self.service.create, body)
            self.assertIn(message, error.message)


class ListRemoveTests(_Base):
    def test_filters(self) -> None:
        a = self.service.create({"Name": "na", "Labels": {"tier": "db"}})["Id"]
        self.service.create({"Name": "nb"})
        self.users[a] = ["c1"]

        def names(**filters: list[str]) -> list[str]:
            return [n["Name"] for n in self.service.list_networks(filters)]

        self.assertEqual(names(type=["custom"]), ["na", "nb"])
        self.assertEqual(names(type=["builtin"]), ["bridge", "host", "none"])
        self.assertEqual(names(label=["tier=db"]), ["na"])
        self.assertEqual(names(dangling=["true"]), ["nb"])
        self.assertEqual(names(driver=["null"]), ["none"])
        self.assertEqual(names(id=[a[:6]]), ["na"])
        self.assertRaises(InvalidParameter, names, colour=["red"])

    def test_record_goes_after_bridge(self) -> None:
        """
        A removed network is gone for clients at once, but its record stays
        on disk, and its subnet taken, until its bridge is gone: a daemon
        killed in between finds the network again rather than a bridge no
        network owns, and no new bridge gets the same subnet meanwhile.
        """
        from twisted.internet.defer import Deferred  # noqa: PLC0415

        self.service.create({"Name": "slow"})
        bridge_gone: Deferred[None] = Deferred()
        self.service.forget = lambda _: bridge_gone
        removing = self.service.remove("slow")
        self.assertRaises(NotFound, self.service.inspect, "slow")
        self.assertEqual(self.make().inspect("slow")["Name"], "slow")
        # Its subnet is still the bridge's: a new network gets another.
        subnet = self.make().inspect("slow")["IPAM"]["Config"][0]["Subnet"]
        other = self.service.create({"Name": "meanwhile"})["Id"]
        self.assertNotEqual(
            self.service.inspect(other)["IPAM"]["Config"][0]["Subnet"], subnet
        )
        bridge_gone.callback(None)
        self.successResultOf(removing)
        self.assertRaises(NotFound, self.make().inspect, "slow")
        after = self.service.create({"Name": "after"})["Id"]
        self.assertEqual(
            self.service.inspect(after)["IPAM"]["Config"][0]["Subnet"], subnet
        )

    def test_remove_and_prune(self) -> None:
        """In use is dockerd's 403 with the IDs; removal drops the bridge too."""
        from twisted.internet.defer import Deferred  # noqa: PLC0415

        a = self.service.create({"Name": "na"})["Id"]
        self.service.create({"Name": "nb"})
        self.service.create({"Name": "nc"})
        self.users[a] = ["c1"]
        error = self.assertRaises(Forbidden, self.service.remove, "na")
        self.assertIn("has active endpoints (c1)", error.message)
        self.successResultOf(self.service.remove("nb"))
        self.assertEqual(len(self.forgotten), 1)
        self.assertRaises(NotFound, self.service.inspect, "nb")
        pruned = self.successResultOf(Deferred.fromCoroutine(self.service.prune({})))
        self.assertEqual(pruned, {"NetworksDeleted": ["nc"]})
        self.assertEqual(self.make().inspect("na")["Name"], "na")
        self.assertEqual([n["Name"] for n in self.make().list_networks({})],
                         ["bridge", "host", "none", "na"])  # fmt: skip
