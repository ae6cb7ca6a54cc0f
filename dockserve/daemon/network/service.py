# -*- test-case-name: tests.daemon.network.test_service -*-
"""
L{NetworkService}: C{docker network create/ls/inspect/rm/prune} (moby's
C{daemon/network.go}, with its texts), the predefined networks, and which
subnet each bridge network has (L{dockserve.daemon.network.ipam}).

A network's bridge device is made by CNI when its first container joins
(and removed with the network); its NAT, published ports and isolation
are one nftables table rendered from state (the attachments' side:
L{dockserve.daemon.network.attach}).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from ipaddress import IPv4Network, ip_network
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from dockserve.daemon import store
from dockserve.daemon.network import ipam, records
from dockserve.daemon.network.records import (
    BRIDGE_NAME,
    DEFAULT_BRIDGE,
    NetworkRecord,
    predefined_id,
)
from dockserve.errors import (
    Conflict,
    DockerError,
    Forbidden,
    InvalidParameter,
    NotFound,
)
from dockserve.timetypes import get_timestamp, rfc3339

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from pathlib import Path

_log = Logger()

#: The filters C{GET /networks} takes.
_LIST_FILTERS = frozenset(
    {"dangling", "driver", "id", "label", "name", "scope", "type"}
)
_PRUNE_FILTERS = frozenset({"until", "label", "label!"})

#: Linux's limit on a network device's name.
_IFNAMSIZ = 15


def _no_members(network_id: str) -> dict[str, Any]:
    del network_id
    return {}


def host_routes() -> list[IPv4Network]:
    """
    The IPv4 routes of the daemon's network namespace (C{/proc/net/route}):
    a new network's subnet must not hide one. Routes through the daemon's
    own bridges (C{dockserve0}, C{br-*}) are its networks', not the host's.
    """
    found = []
    try:
        with open("/proc/net/route") as table:  # noqa: PTH123
            next(table, None)
            for line in table:
                fields = line.split()
                if len(fields) < 8 or fields[0] == "dockserve0":
                    continue
                if fields[0].startswith("br-"):
                    continue
                dest = int(fields[1], 16).to_bytes(4, "little")
                mask = int(fields[7], 16).to_bytes(4, "little")
                net = ip_network(
                    f"{'.'.join(map(str, dest))}/{'.'.join(map(str, mask))}",
                    strict=False,
                )
                if isinstance(net, IPv4Network):
                    found.append(net)
    except OSError:
        pass
    return found


def _bool_filter(values: list[str], key: str) -> bool:
    value = values[-1].lower() if values else ""
    if value in {"true", "1"}:
        return True
    if value in {"false", "0"}:
        return False
    raise InvalidParameter(f"invalid filter '{key}={value}'")


def _labels_match(labels: Mapping[str, str], filters: Mapping[str, list[str]]) -> bool:
    def has(spec: str) -> bool:
        key, eq, value = spec.partition("=")
        return key in labels and (not eq or labels[key] == value)

    return all(has(s) for s in filters.get("label", [])) and not any(
        has(s) for s in filters.get("label!", [])
    )


class NetworkService:
    """
    The networks of one daemon.

    @param root: Where user networks' records live (C{<data-root>/network}).
    @param bridge_enabled: The default C{bridge} network exists (dockerd's
        C{--bridge none} turns it off: containers then get loopback only).
    @param members: A network's running members, as inspect's C{Containers}.
    @param in_use: The IDs of the containers attached to a network now.
    @param drained: Fires once removed containers have left a network.
    @param routes: The host's routes (new subnets avoid them).
    """

    def __init__(
        self,
        root: Path,
        *,
        bridge_enabled: bool = True,
        publish: Callable[..., Any] | None = None,
        routes: Callable[[], list[IPv4Network]] = host_routes,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._root = root
        self._bridge_enabled = bridge_enabled
        self._publish = publish
        self._routes = routes
        self._now = now
        self._networks: dict[str, NetworkRecord] = {}
        #: Networks being removed: gone for clients, but their bridges (and
        #: subnets) are still on the host until their removal ends.
        self._leaving: dict[str, NetworkRecord] = {}
        self.members: Callable[[str], dict[str, Any]] = _no_members
        self.in_use: Callable[[str], list[str]] = lambda _: []
        self.drained: Callable[[str], Deferred[None]] = lambda _: succeed(None)
        self.forget: Callable[[NetworkRecord], Deferred[None] | None] = lambda _: None

    def _event(self, action: str, rec: NetworkRecord, **extra: str) -> None:
        if self._publish is not None:
            self._publish(
                "network",
                action,
                rec.id,
                {"name": rec.name, "type": rec.driver, **extra},
            )

    # --- records -------------------------------------------------------------

    def restore(self) -> None:
        """Read the records; make the predefined networks (blocking, small)."""
        self._root.mkdir(parents=True, exist_ok=True)
        for name, driver in (("host", "host"), ("none", "null")):
            rec = NetworkRecord(predefined_id(name), name, driver, predefined=True)
            self._networks[rec.id] = rec
        users = []
        for path in sorted(self._root.glob("*.json")):
            try:
                users.append(records.from_json(json.loads(path.read_bytes())))
            except (OSError, ValueError, KeyError) as e:
                _log.error("unreadable network record {path}: {e}", path=path, e=e)
        for rec in users:
            self._networks[rec.id] = rec
        if self._bridge_enabled:
            subnet = self._default_subnet(users)
            bridge = NetworkRecord(
                predefined_id("bridge"),
                "bridge",
                subnet=subnet,
                gateway=ipam.gateway_of(subnet),
                options={
                    BRIDGE_NAME: DEFAULT_BRIDGE,
                    records.ICC: "true",
                    records.MASQUERADE: "true",
                    "com.docker.network.bridge.default_bridge": "true",
                    "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                    records.MTU: "1500",
                },
                bridge=DEFAULT_BRIDGE,
                predefined=True,
            )
            self._networks[bridge.id] = bridge

    def _default_subnet(self, users: list[NetworkRecord]) -> IPv4Network:
        """
        The default bridge's subnet: the one chosen the first time (kept in
        C{bridge.subnet}, so a restart never moves running containers'
        network), else the first free pool.
        """
        kept = self._root / "bridge.subnet"
        with contextlib.suppress(OSError, ValueError):
            net = ip_network(kept.read_text().strip())
            if isinstance(net, IPv4Network):
                return net
        subnet = ipam.choose_subnet(
            (r.subnet for r in users if r.subnet), self._routes()
        )
        store.atomic_write(kept, str(subnet).encode())
        return subnet

    def all(self) -> list[NetworkRecord]:
        """Every network, predefined first."""
        return sorted(self._networks.values(), key=lambda r: (not r.predefined, r.name))

    def find(self, reference: str) -> NetworkRecord:
        """
        A network by full ID, name or ID prefix, as dockerd looks it up.

        @raise NotFound: C{network REF not found}.
        """
        if reference in self._networks:
            return self._networks[reference]
        named = [r for r in self._networks.values() if r.name == reference]
        if named:
            return named[0]
        prefixed = [r for r in self._networks.values() if r.id.startswith(reference)]
        if reference and len(prefixed) == 1:
            return prefixed[0]
        if len(prefixed) > 1:
            raise InvalidParameter(
                f"network {reference} is ambiguous ({len(prefixed)} matches found "
                "based on ID prefix)"
            )
        raise NotFound(f"network {reference} not found")

    def default(self) -> NetworkRecord | None:
        """The default bridge, if it exists."""
        return self._networks.get(predefined_id("bridge"))

    # --- the API -------------------------------------------------------------

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """
        C{POST /networks/create}: a bridge network with its own subnet
        (given, or the first free default pool), bridge device and labels.
        """
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise InvalidParameter("network name is empty")
        driver = body.get("Driver") or "bridge"
        if driver != "bridge":
            if driver in {"host", "null"}:
                raise Forbidden(f'only one instance of "{driver}" network is allowed')
            raise NotFound(f'plugin "{driver}" not found')
        if any(r.name == name for r in self._networks.values()):
            raise Conflict(f"network with name {name} already exists")
        if body.get("EnableIPv6"):
            raise InvalidParameter("IPv6 networks are not supported by this daemon yet")
        options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
        labels = {str(k): str(v) for k, v in (body.get("Labels") or {}).items()}
        taken = [
            r.subnet
            for r in [*self._networks.values(), *self._leaving.values()]
            if r.subnet is not None
        ]
        ipam_body = body.get("IPAM") or {}
        subnet, gateway, ip_range = self._addressing(ipam_body, taken)
        config = (ipam_body.get("Config") or [{}])[0]
        aux = {
            str(k): str(ipam.parse_address(str(v), "auxiliary", subnet))
            for k, v in (config.get("AuxiliaryAddresses") or {}).items()
        }
        ipam_options = ipam_body.get("Options")
        network_id = secrets.token_hex(32)
        bridge = options.get(BRIDGE_NAME) or f"br-{network_id[:12]}"
        if len(bridge) > _IFNAMSIZ or "/" in bridge or " " in bridge:
            raise InvalidParameter(f"invalid bridge name: {bridge}")
        if any(r.bridge == bridge for r in self._networks.values()):
            raise Conflict(f"bridge name {bridge} is already in use")
        rec = NetworkRecord(
            network_id,
            name,
            created=rfc3339(int(self._now() * 1e9)),
            subnet=subnet,
            gateway=gateway,
            ip_range=ip_range,
            internal=bool(body.get("Internal")),
            attachable=bool(body.get("Attachable")),
            labels=labels,
            options=options,
            bridge=bridge,
            user_subnet=bool(config.get("Subnet")),
            aux_addresses=aux,
            ipam_options=(
                {str(k): str(v) for k, v in ipam_options.items()}
                if isinstance(ipam_options, dict)
                else None
            ),
        )
        records.save(self._root, rec)
        self._networks[rec.id] = rec
        self._event("create", rec)
        return {"Id": rec.id, "Warning": ""}

    def _addressing(
        self, ipam_body: Mapping[str, Any], taken: list[IPv4Network]
    ) -> tuple[IPv4Network, Any, IPv4Network | None]:
        driver = ipam_body.get("Driver") or "default"
        if driver != "default":
            raise NotFound(f'plugin "{driver}" not found')
        configs = ipam_body.get("Config") or []
        if len(configs) > 1:
            raise InvalidParameter("bridge driver doesn't support multiple subnets")
        config = configs[0] if configs else {}
        if not config.get("Subnet"):
            if config.get("Gateway") or config.get("IPRange"):
                raise InvalidParameter("a gateway or ip-range needs a subnet")
            subnet = ipam.choose_subnet(taken, self._routes())
            return subnet, ipam.gateway_of(subnet), None
        subnet = ipam.parse_subnet(str(config["Subnet"]))
        ipam.check_free(subnet, taken)
        gateway = (
            ipam.parse_address(str(config["Gateway"]), "gateway", subnet)
            if config.get("Gateway")
            else ipam.gateway_of(subnet)
        )
        ip_range = (
            ipam.parse_range(str(config["IPRange"]), subnet)
            if config.get("IPRange")
            else None
        )
        return subnet, gateway, ip_range

    def list_networks(self, filters: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        """C{GET /networks}: dockerd's filters."""
        for key in filters:
            if key not in _LIST_FILTERS:
                raise InvalidParameter(f"invalid filter '{key}'")
        return [
            rec.view(self.members(rec.id))
            for rec in self.all()
            if self._matches(rec, filters)
        ]

    def _matches(self, rec: NetworkRecord, filters: Mapping[str, list[str]]) -> bool:
        if filters.get("name") and not any(n in rec.name for n in filters["name"]):
            return False
        if filters.get("id") and not any(rec.id.startswith(i) for i in filters["id"]):
            return False
        if filters.get("driver") and rec.driver not in filters["driver"]:
            return False
        if filters.get("scope") and "local" not in filters["scope"]:
            return False
        if filters.get("type"):
            for kind in filters["type"]:
                if kind not in {"custom", "builtin"}:
                    raise InvalidParameter(f"invalid filter: 'type'='{kind}'")
            kind = "builtin" if rec.predefined else "custom"
            if kind not in filters["type"]:
                return False
        if filters.get("dangling"):
            dangling = _bool_filter(filters["dangling"], "dangling")
            unused = not rec.predefined and not self.in_use(rec.id)
            if dangling != unused:
                return False
        return _labels_match(rec.labels, filters)

    def inspect(self, reference: str) -> dict[str, Any]:
        """C{GET /networks/{id}}."""
        rec = self.find(reference)
        return rec.view(self.members(rec.id))

    def remove(self, reference: str) -> Deferred[None]:
        """
        C{DELETE /networks/{id}}: refused for a predefined network (403)
        and for one with attached containers (403 with their IDs), as
        dockerd; otherwise gone with its bridge device.
        """
        rec = self.find(reference)
        if rec.predefined:
            raise Forbidden(
                f"{rec.name} is a pre-defined network and cannot be removed"
            )
        users = self.in_use(rec.id)
        if users:
            raise Forbidden(
                f"error while removing network: network {rec.name} id {rec.id} "
                f"has active endpoints ({', '.join(users)})"
            )
        return Deferred.fromCoroutine(self._drop(rec))

    async def _drop(self, rec: NetworkRecord) -> None:
        """
        Gone for every client at once; its record on disk goes last, once
        its bridge has: a daemon killed in between finds the network again
        (and removes it again) rather than a bridge, its address and its
        route that no network owns.
        """
        del self._networks[rec.id]
        self._leaving[rec.id] = rec
        try:
            await self.drained(rec.id)
            gone = self.forget(rec)
            if gone is not None:
                try:
                    await gone
                except DockerError as e:
                    _log.warn("removing bridge {b}: {e}", b=rec.bridge, e=e.message)
            records.remove(self._root, rec)
        finally:
            del self._leaving[rec.id]
        self._event("destroy", rec)

    async def prune(self, filters: Mapping[str, list[str]]) -> dict[str, Any]:
        """C{POST /networks/prune}: every user network no container is on."""
        for key in filters:
            if key not in _PRUNE_FILTERS:
                raise InvalidParameter(f"invalid filter '{key}'")
        until = [get_timestamp(u, self._now()) for u in filters.get("until", [])]
        deleted = []
        for rec in list(self._networks.values()):
            if rec.predefined or self.in_use(rec.id):
                continue
            if not _labels_match(rec.labels, filters):
                continue
            created = _created_seconds(rec.created)
            if any(created > limit for limit in until):
                continue
            await self._drop(rec)
            deleted.append(rec.name)
        if self._publish is not None:
            self._publish("network", "prune", "", {"reclaimed": "0"})
        return {"NetworksDeleted": deleted or None}

    def names(self) -> Iterable[str]:
        """Every network's name."""
        return [r.name for r in self._networks.values()]


def _created_seconds(text: str) -> float:
    try:
        return get_timestamp(text, 0)
    except InvalidParameter:
        return 0.0
