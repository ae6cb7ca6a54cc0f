# -*- test-case-name: tests.daemon.test_network -*-
"""Tests for L{dockserve.daemon.network}."""

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon import network
from dockserve.errors import Forbidden, InvalidParameter, NotFound


class NetworkTests(SynchronousTestCase):
    def test_list(self) -> None:
        """The three predefined networks, filterable by name and driver."""
        self.assertEqual(
            [n["Name"] for n in network.list_networks({}, {})],
            ["bridge", "host", "none"],
        )
        self.assertEqual(
            [n["Name"] for n in network.list_networks({"driver": ["null"]}, {})],
            ["none"],
        )
        self.assertRaises(InvalidParameter, network.list_networks, {"x": ["y"]}, {})

    def test_inspect(self) -> None:
        """By name or ID prefix; members shown; unknown is 404."""
        bridge = network.inspect_network("bridge", {"bridge": {"abc": {"Name": "w"}}})
        self.assertEqual(bridge["Containers"], {"abc": {"Name": "w"}})
        self.assertEqual(
            network.inspect_network(bridge["Id"][:6], {})["Name"], "bridge"
        )
        error = self.assertRaises(NotFound, network.inspect_network, "nope", {})
        self.assertEqual(error.message, "network nope not found")

    def test_refuse_change(self) -> None:
        """Predefined networks cannot be removed."""
        error = self.assertRaises(Forbidden, network.refuse_change, "host")
        self.assertEqual(
            error.message, "host is a pre-defined network and cannot be removed"
        )

    def test_settings(self) -> None:
        """A container's NetworkSettings name its network."""
        self.assertEqual(
            list(network.container_settings("default", "x")["Networks"]), ["bridge"]
        )
        self.assertEqual(
            list(network.container_settings("host", "x")["Networks"]), ["host"]
        )
