# -*- test-case-name: tests.daemon.network.test_model -*-
"""
What the parts of networking tell each other: a network as the plumbing
needs it (L{NetworkSpec}), a container's place on one (L{Endpoint}), and a
published port (L{PortBinding}). Plain values: the records, the CNI
plumbing, the firewall, the port reservations and the embedded DNS all
speak these and nothing of each other.
"""

from ipaddress import IPv4Address, IPv4Network

from attrs import frozen


@frozen
class NetworkSpec:
    """
    A bridge network as the host sees it.

    @ivar id: The network's 64-hex ID.
    @ivar name: Its name (C{bridge} for the default one).
    @ivar bridge: The bridge device (C{dockserve0}, C{br-<id[:12]>}).
    @ivar subnet: Its IPv4 subnet.
    @ivar gateway: The bridge's own address in it.
    @ivar ip_range: Where container addresses come from (C{None}: the
        whole subnet).
    @ivar internal: No traffic to or from outside the bridge.
    @ivar masquerade: Outbound traffic is NATed to the host's address.
    @ivar icc: Containers on the bridge may talk to each other.
    @ivar mtu: The bridge's and veths' MTU (0: the kernel's default).
    @ivar reserved: Addresses never handed out (C{--aux-address}).
    """

    id: str
    name: str
    bridge: str
    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network | None = None
    internal: bool = False
    masquerade: bool = True
    icc: bool = True
    mtu: int = 0
    reserved: frozenset[IPv4Address] = frozenset()


@frozen
class Endpoint:
    """
    A container's interface on a network, as CNI made it.

    @ivar network_id: The network's ID.
    @ivar container_id: The container's ID.
    @ivar ifname: Its name inside the container (C{eth0}, C{eth1}...).
    @ivar ip: The container's address.
    @ivar prefix: The subnet's prefix length.
    @ivar gateway: The network's gateway.
    @ivar mac: The interface's MAC address (C{aa:bb:...}).
    """

    network_id: str
    container_id: str
    ifname: str
    ip: IPv4Address
    prefix: int
    gateway: IPv4Address
    mac: str


@frozen
class PortBinding:
    """
    A published port: C{host_ip:host_port} on the host reaches
    C{container_ip:container_port} in the container.

    @ivar proto: C{tcp} or C{udp}.
    @ivar host_ip: The host address it is bound on (C{0.0.0.0}: all).
    @ivar host_port: The host port (never 0 once reserved).
    @ivar container_ip: The container's address on the network.
    @ivar container_port: The port in the container.
    @ivar container_id: Whose binding it is.
    """

    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    container_id: str = ""


@frozen
class NetPlan:
    """
    What a container's bundle needs of its networking, once it is plumbed.

    @ivar kind: C{none} (a namespace of its own, loopback only, made by
        runc), C{host} (the host's), C{netns} (the namespace at C{netns},
        plumbed by the daemon) or C{container} (another container's).
    @ivar netns: The namespace's path for C{netns} and C{container}.
    @ivar ip: The container's address on its first network (its
        C{/etc/hosts} line), C{""} when it has none.
    @ivar internal_dns: Its C{resolv.conf} names the embedded server at
        127.0.0.11 (on a user-defined network), not the host's servers.
    @ivar host_gateway: What C{--add-host x:host-gateway} means (the
        default bridge's gateway, as dockerd's C{--host-gateway-ip}).
    @ivar links: C{(ip, names)} lines for C{/etc/hosts} (legacy C{--link}).
    @ivar share_from: For C{container}: the directory whose C{hosts},
        C{hostname} and C{resolv.conf} the container shares.
    @ivar hostname: For C{container}: the other container's hostname.
    """

    kind: str = "none"
    netns: str = ""
    ip: str = ""
    internal_dns: bool = False
    host_gateway: str = ""
    links: tuple[tuple[str, str], ...] = ()
    share_from: str = ""
    hostname: str = ""
