# -*- test-case-name: tests.daemon.network.test_service -*-
"""
Networks as records: the predefined C{bridge}, C{host} and C{none}, and
the bridge networks users make, kept as small JSON files under
C{<data-root>/network/} (written durably before a create is answered).
"""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from dockserve.daemon import store
from dockserve.daemon.network.model import NetworkSpec

if TYPE_CHECKING:
    from pathlib import Path

#: The default bridge's device: not docker0, so a real dockerd may coexist.
DEFAULT_BRIDGE = "dockserve0"

#: The option that names a network's bridge device.
BRIDGE_NAME = "com.docker.network.bridge.name"
#: Options dockerd reads for a bridge network (others are kept, unused).
MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
ICC = "com.docker.network.bridge.enable_icc"
MTU = "com.docker.network.driver.mtu"

#: The time the predefined networks claim to have been created.
PREDEFINED_CREATED = "2024-01-01T00:00:00.000000000Z"


def predefined_id(name: str) -> str:
    """A stable 64-hex ID for a predefined network."""
    return hashlib.sha256(f"dockserve network {name}".encode()).hexdigest()


@frozen
class NetworkRecord:
    """
    One network, as inspect shows it and the plumbing needs it.

    @ivar driver: C{bridge}, C{host} or C{null}.
    @ivar subnet: C{None} for C{host} and C{none}.
    @ivar bridge: The bridge device (C{""} for host and none).
    @ivar user_subnet: The subnet was the user's (C{--subnet}), not a
        default pool's: dockerd takes a static C{--ip} only then.
    @ivar aux_addresses: C{IPAM.Config}'s C{AuxiliaryAddresses}
        (C{--aux-address}), shown and kept from static addresses.
    @ivar ipam_options: C{IPAM.Options} as the creator sent them
        (C{None} when it sent none, as dockerd shows them).
    """

    id: str
    name: str
    driver: str = "bridge"
    created: str = PREDEFINED_CREATED
    subnet: IPv4Network | None = None
    gateway: IPv4Address | None = None
    ip_range: IPv4Network | None = None
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = field(factory=dict)
    options: dict[str, str] = field(factory=dict)
    bridge: str = ""
    predefined: bool = False
    user_subnet: bool = False
    aux_addresses: dict[str, str] = field(factory=dict)
    ipam_options: dict[str, str] | None = None

    @property
    def spec(self) -> NetworkSpec:
        """What the plumbing needs of a bridge network."""
        assert self.subnet is not None  # noqa: S101 - bridge networks have one
        assert self.gateway is not None  # noqa: S101
        return NetworkSpec(
            id=self.id,
            name=self.name,
            bridge=self.bridge,
            subnet=self.subnet,
            gateway=self.gateway,
            ip_range=self.ip_range,
            internal=self.internal,
            masquerade=self.options.get(MASQUERADE, "true") != "false",
            icc=self.options.get(ICC, "true") != "false",
            mtu=int(self.options.get(MTU, "0") or 0),
            reserved=frozenset(IPv4Address(a) for a in self.aux_addresses.values()),
        )

    def view(self, containers: dict[str, Any]) -> dict[str, Any]:
        """The API's C{Network} object, with its running members."""
        config: list[dict[str, Any]] = []
        if self.subnet is not None:
            entry: dict[str, Any] = {"Subnet": str(self.subnet)}
            if self.ip_range is not None:
                entry["IPRange"] = str(self.ip_range)
            entry["Gateway"] = str(self.gateway)
            if self.aux_addresses:
                entry["AuxiliaryAddresses"] = dict(self.aux_addresses)
            config.append(entry)
        return {
            "Name": self.name,
            "Id": self.id,
            "Created": self.created,
            "Scope": "local",
            "Driver": self.driver,
            "EnableIPv4": self.driver == "bridge",
            "EnableIPv6": False,
            "IPAM": {
                "Driver": "default",
                "Options": self.ipam_options,
                "Config": config,
            },
            "Internal": self.internal,
            "Attachable": self.attachable,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": containers,
            "Options": dict(self.options),
            "Labels": dict(self.labels),
        }


def to_json(rec: NetworkRecord) -> dict[str, Any]:
    """The record as stored."""
    return {
        "Id": rec.id,
        "Name": rec.name,
        "Created": rec.created,
        "Subnet": str(rec.subnet),
        "Gateway": str(rec.gateway),
        "IPRange": str(rec.ip_range) if rec.ip_range else None,
        "Internal": rec.internal,
        "Attachable": rec.attachable,
        "Labels": rec.labels,
        "Options": rec.options,
        "Bridge": rec.bridge,
        "UserSubnet": rec.user_subnet,
        "AuxiliaryAddresses": rec.aux_addresses,
        "IPAMOptions": rec.ipam_options,
    }


def from_json(value: dict[str, Any]) -> NetworkRecord:
    """The record L{to_json} stored."""
    return NetworkRecord(
        id=value["Id"],
        name=value["Name"],
        created=value.get("Created") or PREDEFINED_CREATED,
        subnet=IPv4Network(value["Subnet"]),
        gateway=IPv4Address(value["Gateway"]),
        ip_range=IPv4Network(value["IPRange"]) if value.get("IPRange") else None,
        internal=bool(value.get("Internal")),
        attachable=bool(value.get("Attachable")),
        labels=dict(value.get("Labels") or {}),
        options=dict(value.get("Options") or {}),
        bridge=value["Bridge"],
        # A record from before this was kept: --ip taken, as it was then.
        user_subnet=bool(value.get("UserSubnet", True)),
        aux_addresses=dict(value.get("AuxiliaryAddresses") or {}),
        ipam_options=value.get("IPAMOptions"),
    )


def save(root: Path, rec: NetworkRecord) -> None:
    """Write C{rec} durably."""
    store.write_json(root / f"{rec.id}.json", to_json(rec))


def remove(root: Path, rec: NetworkRecord) -> None:
    """Remove C{rec}'s file durably."""
    store.remove_durably(root / f"{rec.id}.json")
