# -*- test-case-name: tests.daemon.network.test_ipam -*-
"""
Which subnet a network gets: dockerd's default address pools (moby's
C{ipamutils}: 172.17-172.31 as /16s, then 192.168/16 as /20s), skipping
whatever another network has and whatever the host routes already (so a
new bridge never hides a route of the machine's). Container addresses are
CNI host-local's to hand out; this only chooses subnets and checks the
ones users give.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from typing import TYPE_CHECKING, Any

from dockserve.errors import Forbidden, InvalidParameter

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping


def default_pools() -> Iterator[IPv4Network]:
    """Dockerd's default pools, in its order, as the subnets they are split in."""
    for second in range(17, 32):
        yield IPv4Network(f"172.{second}.0.0/16")
    yield from IPv4Network("192.168.0.0/16").subnets(new_prefix=20)


def _overlaps(net: IPv4Network, taken: Iterable[IPv4Network]) -> bool:
    return any(net.overlaps(other) for other in taken)


def choose_subnet(
    taken: Iterable[IPv4Network], routes: Iterable[IPv4Network]
) -> IPv4Network:
    """
    The first default pool that overlaps no network's subnet and no host
    route (the default route, 0.0.0.0/0, is not a reason to skip).

    @raise Forbidden: All pools are used, as dockerd says it.
    """
    taken = list(taken)
    routes = [r for r in routes if r.prefixlen > 0]
    for pool in default_pools():
        if not _overlaps(pool, taken) and not _overlaps(pool, routes):
            return pool
    raise Forbidden("all predefined address pools have been fully subnetted")


def parse_subnet(text: str) -> IPv4Network:
    """
    A user's C{--subnet}, as dockerd reads it.

    @raise InvalidParameter: Not an IPv4 CIDR (IPv6 is not offered yet).
    """
    try:
        net = ip_network(text, strict=False)
    except ValueError:
        raise InvalidParameter(
            f"Invalid subnet {text} : invalid CIDR address: {text}"
        ) from None
    if not isinstance(net, IPv4Network):
        raise InvalidParameter(f"IPv6 subnets are not supported by this daemon: {text}")
    if net.prefixlen > 30:
        raise InvalidParameter(f"Invalid subnet {text} : too small for containers")
    return net


def parse_address(text: str, what: str, subnet: IPv4Network) -> IPv4Address:
    """
    A C{--gateway} or C{--ip} in C{subnet}.

    @raise InvalidParameter: Not an address of the subnet.
    @raise Forbidden: A gateway on the subnet's network or broadcast
        address, as dockerd's IPAM refuses it.
    """
    try:
        address = ip_address(text)
    except ValueError:
        raise InvalidParameter(f"invalid {what} address: {text}") from None
    if not isinstance(address, IPv4Address) or address not in subnet:
        raise InvalidParameter(
            f"{what} address {text} does not belong to subnet {subnet}"
        )
    held = {subnet.network_address, subnet.broadcast_address}
    if what == "gateway" and address in held:
        # dockerd's IPAM holds both: its gateway cannot be either.
        raise Forbidden(f"failed to allocate gateway ({text}): Address already in use")
    return address


def parse_range(text: str, subnet: IPv4Network) -> IPv4Network:
    """A C{--ip-range} within C{subnet}."""
    try:
        net = ip_network(text, strict=False)
    except ValueError:
        raise InvalidParameter(
            f"Invalid range {text} : invalid CIDR address: {text}"
        ) from None
    if not isinstance(net, IPv4Network) or not net.subnet_of(subnet):
        raise InvalidParameter(f"ip-range {text} does not belong to subnet {subnet}")
    return net


def check_free(subnet: IPv4Network, taken: Iterable[IPv4Network]) -> None:
    """
    @raise Forbidden: C{subnet} overlaps another network's, dockerd's 403.
    """
    if _overlaps(subnet, taken):
        raise Forbidden(
            "invalid pool request: Pool overlaps with other one on this address space"
        )


def gateway_of(subnet: IPv4Network) -> IPv4Address:
    """A subnet's default gateway: its first host address."""
    return subnet.network_address + 1


def check_static(
    ipam_config: Mapping[str, Any] | None,
    *,
    predefined: bool,
    subnet: IPv4Network | None,
    gateway: IPv4Address | None,
    user_subnet: bool = True,
    used: Iterable[str] = (),
) -> None:
    """
    An endpoint's C{IPAMConfig} (C{--ip}, C{--ip6}) checked before CNI
    sees it, so that the user gets dockerd's refusal rather than the
    plugin's: host-local would take an address the daemon has no record
    of refusing, or fail with its own words.

    @param predefined: The network is the default bridge (or another
        predefined one), where dockerd takes no static address.
    @param user_subnet: The network's subnet was given at its create
        (C{--subnet}); dockerd takes no static address on one whose
        subnet came from a default pool.
    @param used: Addresses (C{a.b.c.d} or C{a.b.c.d/len}) other members
        have now, and the network's auxiliary addresses.
    @raise InvalidParameter: An IPv6 address (not offered), a static
        address on a predefined network, or one outside the subnet.
    @raise Forbidden: The gateway's, or a member's, address: dockerd's
        C{Address already in use}.
    """
    config = ipam_config or {}
    if config.get("IPv6Address"):
        raise InvalidParameter(
            f"IPv6 is not supported by this daemon: cannot assign "
            f"{config['IPv6Address']} (--ip6)"
        )
    text = str(config.get("IPv4Address") or "")
    if not text:
        return
    if predefined or subnet is None:
        raise InvalidParameter(
            "user specified IP address is supported on user defined networks only"
        )
    if not user_subnet:
        raise InvalidParameter(
            "user specified IP address is supported only when connecting to "
            "networks with user configured subnets"
        )
    try:
        address = ip_address(text)
    except ValueError:
        raise InvalidParameter(f"invalid IPv4 address: {text}") from None
    if address not in subnet:
        raise InvalidParameter(
            f"Invalid address {text}: It does not belong to any of this "
            "network's subnets"
        )
    taken = {ip_address(u.split("/", 1)[0]) for u in used}
    if address == gateway or address in taken:
        raise Forbidden("Address already in use")
