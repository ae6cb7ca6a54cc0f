"""Tests for L{dockserve.daemon.network.ipam}: subnets and static addresses."""

from ipaddress import IPv4Address, IPv4Network
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.network import ipam
from dockserve.errors import DockerError, Forbidden, InvalidParameter

SUBNET = IPv4Network("10.50.0.0/24")
GATEWAY = IPv4Address("10.50.0.254")


def check(config: Any, **options: Any) -> None:
    """L{ipam.check_static} on a user network of L{SUBNET}."""
    arguments: dict[str, Any] = {
        "predefined": False,
        "subnet": SUBNET,
        "gateway": GATEWAY,
        **options,
    }
    ipam.check_static(config, **arguments)


class CheckStaticTests(SynchronousTestCase):
    def refused(self, kind: type[DockerError], config: Any, **options: Any) -> str:
        return self.assertRaises(kind, check, config, **options).message

    def test_free_address(self) -> None:
        """An address of the subnet no one has, or none asked: no error."""
        check(None)
        check({})
        check({"IPv4Address": "10.50.0.10"}, used=["10.50.0.11/24"])
        check({"IPv4Address": "", "IPv6Address": ""})

    def test_predefined(self) -> None:
        """The default bridge takes no static address (dockerd's text)."""
        self.assertEqual(
            self.refused(InvalidParameter, {"IPv4Address": "172.17.0.5"},
                         predefined=True),
            "user specified IP address is supported on user defined networks only",
        )  # fmt: skip

    def test_pooled_subnet(self) -> None:
        """A network whose subnet came from a pool takes none either."""
        self.assertEqual(
            self.refused(InvalidParameter, {"IPv4Address": "10.50.0.5"},
                         user_subnet=False),
            "user specified IP address is supported only when connecting to "
            "networks with user configured subnets",
        )  # fmt: skip

    def test_outside(self) -> None:
        """An address outside the subnet, or not one: 400."""
        self.assertEqual(
            self.refused(InvalidParameter, {"IPv4Address": "10.60.0.5"}),
            "Invalid address 10.60.0.5: It does not belong to any of this "
            "network's subnets",
        )
        self.assertIn(
            "invalid IPv4 address",
            self.refused(InvalidParameter, {"IPv4Address": "nonsense"}),
        )

    def test_in_use(self) -> None:
        """The gateway's or a member's address: dockerd's 403."""
        for address in ("10.50.0.254", "10.50.0.7"):
            self.assertEqual(
                self.refused(Forbidden, {"IPv4Address": address},
                             used=["10.50.0.7/24"]),
                "Address already in use",
            )  # fmt: skip
        self.refused(Forbidden, {"IPv4Address": "10.50.0.9"}, used=["10.50.0.9"])

    def test_ipv6(self) -> None:
        """An IPv6 address is refused, never dropped without a word."""
        message = self.refused(InvalidParameter, {"IPv6Address": "fd00::5"})
        self.assertIn("IPv6 is not supported", message)
        self.assertIn("fd00::5", message)


class ParseTests(SynchronousTestCase):
    def test_subnet(self) -> None:
        """A CIDR, as dockerd words its refusals; IPv6 said to be unsupported."""
        self.assertEqual(ipam.parse_subnet("10.1.0.0/16"), IPv4Network("10.1.0.0/16"))
        error = self.assertRaises(InvalidParameter, ipam.parse_subnet, "foo")
        self.assertEqual(
            error.message, "Invalid subnet foo : invalid CIDR address: foo"
        )
        error = self.assertRaises(InvalidParameter, ipam.parse_subnet, "fd00::/64")
        self.assertIn("IPv6 subnets are not supported", error.message)

    def test_gateway(self) -> None:
        """A gateway in the subnet, never its network or broadcast address."""
        self.assertEqual(ipam.parse_address("10.50.0.254", "gateway", SUBNET), GATEWAY)
        for held in ("10.50.0.0", "10.50.0.255"):
            error = self.assertRaises(
                Forbidden, ipam.parse_address, held, "gateway", SUBNET
            )
            self.assertEqual(
                error.message,
                f"failed to allocate gateway ({held}): Address already in use",
            )
        error = self.assertRaises(
            InvalidParameter, ipam.parse_address, "10.51.0.1", "gateway", SUBNET
        )
        self.assertIn("does not belong to subnet", error.message)

    def test_overlap(self) -> None:
        """dockerd's 'Pool overlaps' for a subnet another network has."""
        error = self.assertRaises(
            Forbidden, ipam.check_free, SUBNET, [IPv4Network("10.50.0.0/16")]
        )
        self.assertIn(
            "Pool overlaps with other one on this address space", error.message
        )
        ipam.check_free(SUBNET, [IPv4Network("10.51.0.0/16")])
