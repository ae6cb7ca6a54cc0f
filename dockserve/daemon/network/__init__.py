# -*- test-case-name: tests.daemon.test_network -*-
"""
The networks a container can join while bridge networking is not built.

C{none} gives a container its own network namespace with nothing in it but
loopback, C{host} shares the host's, and the default C{bridge} is, for
now, like C{none}: its own namespace with loopback only. C{GET /networks}
still lists all three, as dockerd does, so the docker CLI and the SDK work
unchanged.
"""

import hashlib
from typing import Any

from dockserve.errors import Forbidden, InvalidParameter, NotFound

#: Docker's three predefined networks and their drivers.
PREDEFINED = (("bridge", "bridge"), ("host", "host"), ("none", "null"))

#: The time the predefined networks claim to have been created.
_CREATED = "2024-01-01T00:00:00.000000000Z"


def network_id(name: str) -> str:
    """A stable 64-hex ID for a predefined network."""
    return hashlib.sha256(f"dockserve network {name}".encode()).hexdigest()


def mode_network(network_mode: str | None) -> str:
    """The network a C{HostConfig.NetworkMode} joins (C{default} is bridge)."""
    if not network_mode or network_mode == "default":
        return "bridge"
    return network_mode


def _describe(name: str, driver: str, containers: dict[str, Any]) -> dict[str, Any]:
    return {
        "Name": name,
        "Id": network_id(name),
        "Created": _CREATED,
        "Scope": "local",
        "Driver": driver,
        "EnableIPv4": name == "bridge",
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": []},
        "Internal": False,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": {},
        "Labels": {},
    }


def _matches(name: str, driver: str, filters: dict[str, list[str]]) -> bool:
    for key, wanted in filters.items():
        if key == "name":
            ok = any(w in name for w in wanted)
        elif key == "id":
            ok = any(network_id(name).startswith(w) for w in wanted)
        elif key == "driver":
            ok = driver in wanted
        elif key == "type":
            ok = "builtin" in wanted
        elif key == "scope":
            ok = "local" in wanted
        elif key in {"label", "dangling"}:
            ok = key == "dangling" and "false" in wanted
        else:
            raise InvalidParameter(f"invalid filter '{key}'")
        if not ok:
            return False
    return True


def list_networks(
    filters: dict[str, list[str]], members: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """
    C{GET /networks}: the predefined networks that match C{filters}.

    @param members: Network name -> the C{Containers} map of its running
        members.
    """
    return [
        _describe(name, driver, members.get(name, {}))
        for name, driver in PREDEFINED
        if _matches(name, driver, filters)
    ]


def inspect_network(
    reference: str, members: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """
    C{GET /networks/{id}}: by name, full ID or ID prefix.

    @raise NotFound: C{network REF not found}.
    """
    for name, driver in PREDEFINED:
        if reference == name or (reference and network_id(name).startswith(reference)):
            return _describe(name, driver, members.get(name, {}))
    raise NotFound(f"network {reference} not found")


def refuse_change(reference: str) -> None:
    """
    Creating, removing, connecting or disconnecting networks is not built;
    the predefined ones cannot be changed in dockerd either.

    @raise Forbidden: For a predefined network, as dockerd.
    @raise NotFound: For any other name.
    """
    for name, _ in PREDEFINED:
        if reference in {name, network_id(name)}:
            raise Forbidden(f"{name} is a pre-defined network and cannot be removed")
    raise NotFound(f"network {reference} not found")


def container_settings(network_mode: str | None, container_id: str) -> dict[str, Any]:
    """The C{NetworkSettings} of a container in C{network_mode}."""
    name = mode_network(network_mode)
    endpoint = {
        "IPAMConfig": None,
        "Links": None,
        "Aliases": None,
        "MacAddress": "",
        "DriverOpts": None,
        "GwPriority": 0,
        "NetworkID": network_id(name),
        "EndpointID": "",
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": None,
    }
    return {
        "Bridge": "",
        "SandboxID": container_id if name != "host" else "",
        "SandboxKey": "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": {},
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": "",
        "Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "MacAddress": "",
        "Networks": {name: endpoint},
    }
