# -*- test-case-name: tests.daemon.test_network -*-
"""Tests for L{dockserve.daemon.network}."""

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon import network


class ModeNetworkTests(SynchronousTestCase):
    def test_default_is_bridge(self) -> None:
        """The CLI's C{default} mode, or none given, joins C{bridge}."""
        self.assertEqual(network.mode_network("default"), "bridge")
        self.assertEqual(network.mode_network(None), "bridge")
        self.assertEqual(network.mode_network(""), "bridge")

    def test_named(self) -> None:
        """Any other mode names its network."""
        self.assertEqual(network.mode_network("host"), "host")
        self.assertEqual(network.mode_network("appnet"), "appnet")
