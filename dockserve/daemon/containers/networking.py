# -*- test-case-name: tests.integration.test_networking -*-
"""
A container's networks: which ones a start joins (C{NetworkMode} and
C{NetworkingConfig}, as dockerd reads them), its published ports, what
inspect and C{docker ps} show of them, and C{docker network
connect/disconnect}. The plumbing itself is the network area's
(L{dockserve.daemon.network.attach}).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from attrs import evolve

from twisted.internet.defer import Deferred, DeferredList, succeed

from dockserve.daemon.containers import configs
from dockserve.daemon.containers.table import Container, ContainerParts
from dockserve.daemon.network import mode_network
from dockserve.daemon.network.attach import Request, endpoint_id, names_of
from dockserve.daemon.network.ipam import check_static
from dockserve.daemon.network.model import NetPlan
from dockserve.errors import (
    Conflict,
    DockerError,
    Forbidden,
    InvalidParameter,
    NotFound,
)

if TYPE_CHECKING:
    from dockserve.daemon.containers.record import ContainerRecord
    from dockserve.daemon.network.attach import Attachments
    from dockserve.daemon.network.records import NetworkRecord
    from dockserve.daemon.network.service import NetworkService


def _empty_endpoint(network_id: str = "") -> dict[str, Any]:
    return {
        "IPAMConfig": None,
        "Links": None,
        "Aliases": None,
        "MacAddress": "",
        "DriverOpts": None,
        "GwPriority": 0,
        "NetworkID": network_id,
        "EndpointID": "",
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": None,
    }


def port_requests(rec: ContainerRecord) -> list[tuple[str, str, str, int]]:
    """
    C{(proto, host_ip, host_port, container_port)} of C{PortBindings} and,
    with C{-P}, every exposed port not bound (host port C{""}: any); a
    host port may be a range (C{8000-8010}).
    """
    found: list[tuple[str, str, str, int]] = []
    bound = rec.host_config.get("PortBindings") or {}
    for key, entries in bound.items():
        port, _, proto = str(key).partition("/")
        for entry in entries or [{}]:
            entry = entry or {}  # noqa: PLW2901 - null is Go's zero value
            found.append(
                (
                    proto or "tcp",
                    str(entry.get("HostIp") or ""),
                    str(entry.get("HostPort") or ""),
                    int(port),
                )
            )
    if rec.host_config.get("PublishAllPorts"):
        for key in rec.config.get("ExposedPorts") or {}:
            if key in bound:
                continue
            port, _, proto = str(key).partition("/")
            found.append((proto or "tcp", "", "", int(port)))
    return found


def _endpoints(rec: ContainerRecord) -> dict[str, Any]:
    """A copy of C{rec}'s C{NetworkingConfig.EndpointsConfig}."""
    return dict((rec.networking_config or {}).get("EndpointsConfig") or {})


def _with_endpoints(rec: ContainerRecord, endpoints: dict[str, Any]) -> dict[str, Any]:
    """C{rec}'s C{NetworkingConfig} with C{endpoints}."""
    return {**(rec.networking_config or {}), "EndpointsConfig": endpoints}


def normalize_endpoints(
    host_config: dict[str, Any], networking: dict[str, Any]
) -> dict[str, Any]:
    """
    C{networking} at create, with its C{NetworkMode}'s network first among
    its C{EndpointsConfig} (named as the user named it; the CLI's
    C{default} is the default bridge): from then on the set of networks
    is the endpoints', as dockerd's.
    """
    mode = host_config.get("NetworkMode") or "default"
    endpoints = dict((networking or {}).get("EndpointsConfig") or {})
    if mode in {"none", "host"} or mode.startswith("container:"):
        return {**(networking or {}), "EndpointsConfig": endpoints}
    name = "bridge" if mode == "default" else mode
    first = endpoints.pop(name, None) or endpoints.pop("default", None) or {}
    return {**(networking or {}), "EndpointsConfig": {name: first, **endpoints}}


def endpoint_links(config: dict[str, Any] | None) -> dict[str, str]:
    """
    An endpoint's C{Links} (C{other:alias}, on a user-defined network) as
    the embedded DNS takes them: alias -> the other container's name. One
    that is not C{other[:alias]} is left out.
    """
    found: dict[str, str] = {}
    for value in (config or {}).get("Links") or []:
        parts = str(value).split(":")
        if not parts[0] or len(parts) > 2:
            continue
        target = parts[0].lstrip("/")
        found[parts[-1].rsplit("/", 1)[-1]] = target
    return found


def _exposed(rec: ContainerRecord) -> list[str]:
    keys = list(rec.config.get("ExposedPorts") or {})
    for key in rec.host_config.get("PortBindings") or {}:
        if key not in keys:
            keys.append(key)
    return [k if "/" in k else f"{k}/tcp" for k in keys]


class ContainerNetworking(ContainerParts):
    """The network side of the container service."""

    _networks: NetworkService | None
    _attachments: Attachments | None

    def set_networking(
        self, networks: NetworkService, attachments: Attachments | None
    ) -> None:
        """The network records and the plumbing (a daemon with networking)."""
        self._networks = networks
        self._attachments = attachments

    def _networks_of(
        self, rec: ContainerRecord
    ) -> list[tuple[NetworkRecord, dict[str, Any]]]:
        """
        The bridge networks C{rec} is on, in order (the first is C{eth0}):
        its C{NetworkingConfig.EndpointsConfig}, which create fills with its
        C{NetworkMode}'s network and connect and disconnect change (as
        dockerd's C{NetworkSettings.Networks}); empty for C{none}, C{host},
        C{container:}, a default bridge that does not exist (C{--bridge
        none}), or a container disconnected from all.

        @raise NotFound: A network that is gone (dockerd's 404 at start).
        """
        mode = rec.host_config.get("NetworkMode") or "default"
        if (
            mode in {"none", "host"}
            or mode.startswith("container:")
            or self._networks is None
        ):
            return []
        networking = rec.networking_config or {}
        endpoints = _endpoints(rec)
        if not endpoints and not networking.get("Disconnected"):
            # A record from before membership was kept: its mode alone.
            endpoints = {mode: {}}
        found: list[tuple[NetworkRecord, dict[str, Any]]] = []
        for name, config in endpoints.items():
            wanted = "bridge" if name in {"default", ""} else name
            try:
                net = self._networks.find(wanted)
            except DockerError:
                if wanted == "bridge":
                    continue  # --bridge none: loopback only, as dockerd.
                raise
            if net.driver == "bridge" and all(net.id != n.id for n, _ in found):
                found.append((net, config or {}))
        return found

    def _check_networks(self, rec: ContainerRecord) -> None:
        """
        The networks a start joins exist (dockerd's 404 C{network X not
        found}, at start: a 404 from create would make the CLI pull).
        """
        mode = rec.host_config.get("NetworkMode") or "default"
        if self._networks is None:
            configs.check_network(rec.host_config)
            return
        if mode.startswith("container:"):
            self._get(mode.removeprefix("container:"))
            return
        if mode in {"none", "host"}:
            for config in _endpoints(rec).values():
                check_static(
                    (config or {}).get("IPAMConfig"),
                    predefined=True, subnet=None, gateway=None,
                )  # fmt: skip
        self._networks_of(rec)

    def _static_at_create(
        self, host_config: dict[str, Any], networking: dict[str, Any]
    ) -> None:
        """
        The C{--ip}/C{--ip6} refusals that need no running member, at
        create as dockerd makes them (so no container is left behind); a
        network that does not exist is left to the start's 404.
        """
        if self._networks is None:
            return
        mode = host_config.get("NetworkMode") or "default"
        endpoints = normalize_endpoints(host_config, networking)["EndpointsConfig"]
        for name, config in endpoints.items():
            ipam = (config or {}).get("IPAMConfig")
            if mode in {"none", "host"}:
                check_static(ipam, predefined=True, subnet=None, gateway=None)
                continue
            try:
                net = self._networks.find("bridge" if name == "default" else name)
            except DockerError:
                continue
            check_static(
                ipam, predefined=net.predefined, subnet=net.subnet,
                gateway=net.gateway, user_subnet=net.user_subnet,
                used=net.aux_addresses.values(),
            )  # fmt: skip

    def _check_static(self, net: NetworkRecord, config: dict[str, Any] | None) -> None:
        """An endpoint's C{--ip}/C{--ip6} refused as dockerd does, before CNI."""
        members = self._attachments.members(net.id) if self._attachments else {}
        check_static(
            (config or {}).get("IPAMConfig"),
            predefined=net.predefined,
            subnet=net.subnet,
            gateway=net.gateway,
            user_subnet=net.user_subnet,
            used=[
                *(str(m.get("IPv4Address") or "0.0.0.0") for m in members.values()),
                *net.aux_addresses.values(),
            ],
        )

    async def _plumb(self, c: Container) -> NetPlan | None:
        """
        Make a starting container's networking: C{None} when runc alone
        makes it (loopback only) or it shares the host's.

        @raise Conflict: C{--network container:X} with X not running.
        """
        if self._attachments is None:
            return None
        rec = c.record
        mode = rec.host_config.get("NetworkMode") or "default"
        if mode.startswith("container:"):
            return self._joined_plan(mode.removeprefix("container:"))
        joins = self._networks_of(rec)
        if not joins:
            return None
        networks = []
        dns_links: dict[str, dict[str, str]] = {}
        for index, (net, config) in enumerate(joins):
            self._check_static(net, config)
            ipam = (config or {}).get("IPAMConfig") or {}
            mac = str((config or {}).get("MacAddress") or "")
            if index == 0 and not mac:
                mac = str(rec.config.get("MacAddress") or "")
            aliases = (
                names_of([*((config or {}).get("Aliases") or [])])
                if not net.predefined
                else []
            )
            networks.append((net, aliases, str(ipam.get("IPv4Address") or ""), mac))
            if not net.predefined:
                dns_links[net.id] = endpoint_links(config)
        request = Request(
            container_id=c.id,
            name=rec.name.lstrip("/"),
            hostname=str(rec.config.get("Hostname") or c.id[:12]),
            networks=networks,
            ports=self._ports_for(rec),
            dns_servers=[str(s) for s in rec.host_config.get("Dns") or []],
            links=dns_links,
        )
        plan: NetPlan = await self._attachments.attach(request)
        return plan

    def _ports_for(self, rec: ContainerRecord) -> list[tuple[str, str, int, int, int]]:
        """The reservations to ask for: a host port range is its two ends."""
        found = []
        for proto, host_ip, host_port, cport in port_requests(rec):
            start, _, end = host_port.partition("-")
            try:
                first = int(start) if start else 0
                last = int(end) if end else 0
            except ValueError:
                raise InvalidParameter(f"invalid hostPort: {host_port}") from None
            found.append((proto, host_ip, first, last, cport))
        return found

    def _joined_plan(self, reference: str) -> NetPlan:
        other = self._get(reference)
        if not other.record.state.running:
            raise Conflict(
                f"cannot join network of a non running container: {other.id}"
            )
        att = self._attachments.of(other.id) if self._attachments else None
        netns = (
            att.netns
            if att is not None and att.netns
            else (f"/proc/{other.record.state.pid}/ns/net")
        )
        return NetPlan(
            kind="container",
            netns=netns,
            share_from=str(other.directory),
            hostname=str(other.record.config.get("Hostname") or other.id[:12]),
        )

    async def _unplumb(self, c: Container) -> None:
        """Undo a container's networking (exit, failed start)."""
        if self._attachments is not None:
            await self._attachments.detach(c.id)

    # --- views ----------------------------------------------------------------

    def network_settings(self, rec: ContainerRecord) -> dict[str, Any]:
        """Inspect's C{NetworkSettings}, as dockerd fills them."""
        att = self._attachments.of(rec.id) if self._attachments else None
        mode = rec.host_config.get("NetworkMode") or "default"
        networks: dict[str, Any] = {}
        top = {"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
               "MacAddress": ""}  # fmt: skip
        try:
            joins = self._networks_of(rec) if self._networks is not None else []
        except DockerError:
            joins = []
        for net, config in joins:
            entry = _empty_endpoint(net.id)
            aliases = (config or {}).get("Aliases")
            entry["Aliases"] = aliases or None
            entry["Links"] = (config or {}).get("Links") or None
            entry["IPAMConfig"] = (config or {}).get("IPAMConfig")
            joined = att.joined.get(net.id) if att is not None else None
            if joined is not None:
                ep = joined.endpoint
                entry.update({
                    "EndpointID": endpoint_id(rec.id, net.id),
                    "Gateway": str(ep.gateway), "IPAddress": str(ep.ip),
                    "IPPrefixLen": ep.prefix, "MacAddress": ep.mac,
                })  # fmt: skip
                if not net.predefined:
                    entry["DNSNames"] = names_of(
                        [rec.name.lstrip("/"), *(joined.aliases), rec.id[:12]]
                    )
                if net.name == "bridge":
                    top = {k: entry[k] for k in top}
            networks[net.name] = entry
        if not networks:
            name = mode_network(mode)
            if name.startswith("container:"):
                name = "container"
            networks[name if name != "default" else "bridge"] = _empty_endpoint()
            if name in {"none", "host"} and self._networks is not None:
                with contextlib.suppress(DockerError):
                    networks[name]["NetworkID"] = self._networks.find(name).id
        return {
            "Bridge": "",
            "SandboxID": rec.id if att is not None else "",
            "SandboxKey": att.netns if att is not None else "",
            "HairpinMode": False,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Ports": self._ports_view(rec, att),
            "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None,
            **top,
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPv6Gateway": "",
            "Networks": networks,
        }

    def _ports_view(self, rec: ContainerRecord, att: Any) -> dict[str, Any]:
        """C{{"80/tcp": [{"HostIp", "HostPort"}]}}, C{null} when not published."""
        if att is None:
            return {}
        ports: dict[str, Any] = dict.fromkeys(_exposed(rec))
        for binding in att.bindings:
            key = f"{binding.container_port}/{binding.proto}"
            ports.setdefault(key, None)
            if ports[key] is None:
                ports[key] = []
            ports[key].append(
                {
                    "HostIp": binding.host_ip or "0.0.0.0",
                    "HostPort": str(binding.host_port),
                }
            )
        return ports

    def ports_list(self, rec: ContainerRecord) -> list[dict[str, Any]]:
        """C{docker ps}'s C{Ports}: published ones, then exposed ones."""
        att = self._attachments.of(rec.id) if self._attachments else None
        found: list[dict[str, Any]] = []
        published = set()
        for binding in att.bindings if att is not None else []:
            published.add((binding.container_port, binding.proto))
            found.append({
                "IP": binding.host_ip or "0.0.0.0",
                "PrivatePort": binding.container_port,
                "PublicPort": binding.host_port,
                "Type": binding.proto,
            })  # fmt: skip
        for key in _exposed(rec):
            port, _, proto = key.partition("/")
            if (int(port), proto) not in published:
                found.append({"PrivatePort": int(port), "Type": proto})
        return found

    # --- connect and disconnect ----------------------------------------------

    def network_in_use(self, network_id: str) -> list[str]:
        """
        The running containers on a network (dockerd's active endpoints):
        a removed container no longer counts, though its detach may still
        be under way (L{network_drained} waits for it).
        """
        if self._attachments is None:
            return []
        return [
            cid
            for cid in self._attachments.users(network_id)
            if cid in self._containers
        ]

    def network_drained(self, network_id: str) -> Deferred[None]:
        """
        Fires once the removed containers still on a network have left it:
        C{docker rm -f} answers before its container's cleanup, and the
        network's removal must not pull the bridge from under that cleanup.
        """
        users = self._attachments.users(network_id) if self._attachments else []
        pending = [
            self._reaping[cid]
            for cid in users
            if cid not in self._containers and cid in self._reaping
        ]
        if not pending:
            return succeed(None)
        return DeferredList(pending, consumeErrors=True).addCallback(lambda _: None)

    def _network(self, reference: str) -> NetworkRecord:
        """
        A network by name or ID.

        @raise NotFound: No such network, or none at all (no networking).
        """
        if self._networks is None:
            raise NotFound(f"network {reference} not found")
        return self._networks.find(reference)

    async def connect(
        self, network: str, container: str, config: dict[str, Any] | None
    ) -> None:
        """
        C{POST /networks/{id}/connect}: kept in the container's record (so
        it joins at every start) and, if it runs, joined now.
        """
        net = self._network(network)
        c = self._get(container)
        if net.driver != "bridge":
            # runconfig's ErrConflictHostNetwork and ErrConflictNoNetwork: 400.
            raise InvalidParameter(
                "container cannot be disconnected from host network or connected "
                "to host network"
                if net.driver == "host"
                else "container cannot be connected to multiple networks with one "
                "of the networks in private (none) mode"
            )
        mode = c.record.host_config.get("NetworkMode") or "default"
        if mode in {"none", "host"} or mode.startswith("container:"):
            raise Forbidden(
                "container sharing network namespace with another container or "
                "host cannot be connected to any other network"
                if mode != "none"
                else "container cannot be connected to multiple networks with one "
                "of the networks in private (none) mode"
            )
        if net.predefined and (config or {}).get("Aliases"):
            raise InvalidParameter(
                "network-scoped alias is supported only for containers in user "
                "defined networks"
            )
        if any(n.id == net.id for n, _ in self._networks_of(c.record)):
            raise Forbidden(
                f"endpoint with name {c.record.name.lstrip('/')} already exists in "
                f"network {net.name}"
            )
        self._check_static(net, config)
        endpoints = _endpoints(c.record)
        endpoints[net.name] = dict(config or {})
        networking = _with_endpoints(c.record, endpoints)
        networking.pop("Disconnected", None)
        attachments = self._attachments
        if c.record.state.running and attachments and attachments.of(c.id):
            ipam = (config or {}).get("IPAMConfig") or {}
            await attachments.connect(
                c.id, net, names_of((config or {}).get("Aliases") or []),
                str(ipam.get("IPv4Address") or ""), endpoint_links(config or {}),
            )  # fmt: skip
        self._save(c, evolve(c.record, networking_config=networking))

    async def disconnect(self, network: str, container: str, force: bool) -> None:
        """
        C{POST /networks/{id}/disconnect}: off the network now and at every
        start; C{NetworkMode} stays as it was, as with dockerd.
        """
        del force
        net = self._network(network)
        c = self._get(container)
        if not any(n.id == net.id for n, _ in self._networks_of(c.record)):
            raise Forbidden(f"container {c.id} is not connected to network {net.name}")
        endpoints = _endpoints(c.record)
        if not endpoints:
            mode = c.record.host_config.get("NetworkMode") or "default"
            endpoints = {mode: {}}
        for key in list(endpoints):
            if key in {net.name, net.id} or (
                key in {"default", ""} and net.name == "bridge"
            ):
                del endpoints[key]
        attachments = self._attachments
        if c.record.state.running and attachments and attachments.of(c.id):
            await attachments.disconnect(c.id, net)
        networking = _with_endpoints(c.record, endpoints)
        if not endpoints:
            networking["Disconnected"] = True  # on no network at all now
        self._save(c, evolve(c.record, networking_config=networking))
