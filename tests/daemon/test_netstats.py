# -*- test-case-name: tests.daemon.test_netstats -*-
"""Tests for L{dockserve.daemon.netstats}."""

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.netstats import network_stats, parse_net_dev

#: /proc/net/dev of a namespace with loopback and a veth, as Linux 6 prints it.
NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0: 1296915    8105    1    2    0     0          0         3   437125    5421    4    5    0     0       0          0
"""  # noqa: E501

ETH0 = {
    "rx_bytes": 1296915, "rx_packets": 8105, "rx_errors": 1, "rx_dropped": 2,
    "tx_bytes": 437125, "tx_packets": 5421, "tx_errors": 4, "tx_dropped": 5,
}  # fmt: skip


class ParseTests(SynchronousTestCase):
    def test_interfaces_but_loopback(self) -> None:
        """
        Each interface with dockerd's eight counters, in its order; not
        C{lo}, which dockerd never reports (it is no endpoint).
        """
        stats = parse_net_dev(NET_DEV)
        self.assertEqual(stats, {"eth0": ETH0})
        self.assertEqual(list(stats["eth0"]), list(ETH0))

    def test_loopback_only(self) -> None:
        """A namespace with loopback only has nothing to report."""
        self.assertEqual(parse_net_dev("\n".join(NET_DEV.splitlines()[:3])), {})

    def test_garbage(self) -> None:
        """Lines that are not counters are left out."""
        text = NET_DEV + "bad line\n  x0: 1 2 3\n  y0: " + "z " * 16 + "\n"
        self.assertEqual(parse_net_dev(text), {"eth0": ETH0})


class NetworkStatsTests(SynchronousTestCase):
    """L{network_stats} over a made-up /proc."""

    def setUp(self) -> None:
        self.proc = Path(self.mktemp())
        for pid in ("self", "42"):
            (self.proc / pid / "ns").mkdir(parents=True)
            (self.proc / pid / "net").mkdir()
        (self.proc / "self" / "ns" / "net").write_text("")
        (self.proc / "42" / "net" / "dev").write_text(NET_DEV)

    def test_own_namespace(self) -> None:
        """A container of its own namespace: its interfaces."""
        (self.proc / "42" / "ns" / "net").write_text("")
        self.assertEqual(network_stats(42, self.proc), {"eth0": ETH0})

    def test_host_namespace(self) -> None:
        """
        A container in the daemon's namespace (C{--network host}) has no
        networks: /proc/<pid>/net/dev would be the host's.
        """
        (self.proc / "42" / "ns" / "net").hardlink_to(self.proc / "self" / "ns" / "net")
        self.assertEqual(network_stats(42, self.proc), {})

    def test_no_process(self) -> None:
        """No pid, or a process gone: nothing."""
        self.assertEqual(network_stats(0, self.proc), {})
        self.assertEqual(network_stats(43, self.proc), {})
