# -*- test-case-name: tests.integration.test_networking -*-
"""
Containers on networks: what a start plumbs and an exit undoes.

A container on a bridge network gets a network namespace of its own made
by the daemon before runc runs (C{<exec-root>/netns/<id>}, given to runc
by path), loopback and one CNI interface per network (C{eth0},
C{eth1}...), its published ports held by the daemon and forwarded by the
one nftables table, and, on a user-defined network, the embedded DNS
server at 127.0.0.11 that knows the names of its network's containers.
An exit undoes it all in reverse; so does a failed start.

What each running container has is kept under C{<exec-root>/network/}
(it goes with a reboot, as the namespaces and the addresses do), so a
daemon restart finds it again (L{Attachments.restore}).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from dockserve.daemon import store
from dockserve.daemon.network.model import (
    Endpoint,
    NetPlan,
    NetworkSpec,
    PortBinding,
)
from dockserve.daemon.network.ports import PortRequest, external_connectivity_error
from dockserve.errors import (
    Conflict,
    DockerError,
    InvalidParameter,
    NotFound,
    SystemError_,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from twisted.internet.interfaces import IReactorTime

    from dockserve.daemon.network.records import NetworkRecord
    from dockserve.daemon.network.service import NetworkService

_log = Logger()

#: How long a network's removal waits for containers to leave it.
_DRAIN = 30.0

#: The resolver's address inside every container on a user network.
EMBEDDED_DNS = "127.0.0.11"


@define
class Joined:
    """
    A container's place on one network.

    @ivar aliases: Its names there besides its own (C{--network-alias},
        compose's service name).
    @ivar links: Its links there (C{--link other:alias} on a user-defined
        network): alias -> the other container's name, a name the embedded
        DNS answers for this container alone.
    """

    network_id: str
    endpoint: Endpoint
    aliases: list[str] = field(factory=list)
    links: dict[str, str] = field(factory=dict)
    #: The network as it was joined (not saved: a restore looks it up), so
    #: that a network removed meanwhile can still be left.
    spec: NetworkSpec | None = None


@define
class Attached:
    """Everything a running container has of networking."""

    container_id: str
    name: str
    hostname: str
    netns: str = ""
    joined: dict[str, Joined] = field(factory=dict)
    bindings: list[PortBinding] = field(factory=list)
    dns: bool = False
    dns_servers: list[str] = field(factory=list)


@define
class Request:
    """
    What a container asks of networking at a start (from its record).

    @ivar networks: C{(network, aliases, static ip, mac)} in order: the
        first is C{eth0}, the one its published ports and C{/etc/hosts}
        use.
    @ivar ports: C{(proto, host_ip, host_port, host_port_end,
        container_port)}; a host port of 0 is the kernel's choice, an end
        other than 0 a range to take the first free port of.
    @ivar links: Per network ID, its links there (L{Joined.links}).
    """

    container_id: str
    name: str
    hostname: str
    networks: list[tuple[NetworkRecord, list[str], str, str]]
    ports: list[tuple[str, str, int, int, int]] = field(factory=list)
    dns_servers: list[str] = field(factory=list)
    links: dict[str, dict[str, str]] = field(factory=dict)


def _endpoint_json(joined: Joined) -> dict[str, Any]:
    ep = joined.endpoint
    return {
        "NetworkID": joined.network_id,
        "IfName": ep.ifname,
        "IP": str(ep.ip),
        "Prefix": ep.prefix,
        "Gateway": str(ep.gateway),
        "Mac": ep.mac,
        "Aliases": joined.aliases,
        "Links": joined.links,
    }


def _endpoint_from(container_id: str, value: Mapping[str, Any]) -> Joined:
    return Joined(
        value["NetworkID"],
        Endpoint(
            network_id=value["NetworkID"],
            container_id=container_id,
            ifname=value["IfName"],
            ip=IPv4Address(value["IP"]),
            prefix=int(value["Prefix"]),
            gateway=IPv4Address(value["Gateway"]),
            mac=value["Mac"],
        ),
        list(value.get("Aliases") or []),
        dict(value.get("Links") or {}),
    )


class Attachments:
    """
    The plumbing of running containers on bridge networks.

    @param netns: Makes and removes namespace files (C{create(path)},
        C{remove(path)}, C{run(path, argv)} inside it, all Deferreds).
    @param cni: Loopback and interfaces (L{dockserve.daemon.network.cni}).
    @param firewall: The one nftables table (C{apply(networks, bindings)}).
    @param ports: Port reservations (C{reserve}, C{release}, C{bindings}).
    @param dns: The embedded resolver (C{attach(id, netns)}, C{detach(id)}).
    @param flush_udp: Forgets the kernel's UDP flows to some bindings' host
        ports (L{dockserve.daemon.network.ports.flush_udp_conntrack}): called
        once the firewall publishes them and once it no longer does, so a
        client that keeps sending is not held by a flow from before.
    @param restoring: A L{restore} is to come (a daemon's start): attach
        and connect wait for it, so that a container its restart policy
        starts while the daemon restores (its namespace file, its cached
        ADDs are the very ones of its last run) is not plumbed while
        restore sweeps what that last run left.
    @param clock: Bounds how long a network's removal waits for the
        containers still leaving it (L{forget_network}).
    """

    def __init__(
        self,
        exec_root: Path,
        networks: NetworkService,
        *,
        netns: Any,
        cni: Any,
        firewall: Any,
        ports: Any,
        dns: Any,
        publish: Callable[..., Any] | None = None,
        flush_udp: Callable[[list[PortBinding]], Deferred[None]] | None = None,
        restoring: bool = False,
        clock: IReactorTime | None = None,
    ) -> None:
        self._netns_dir = exec_root / "netns"
        self._state_dir = exec_root / "network"
        self._networks = networks
        self._netns = netns
        self._cni = cni
        self._firewall = firewall
        self._ports = ports
        self._dns = dns
        self._publish = publish
        self._flush_udp = flush_udp
        self._attached: dict[str, Attached] = {}
        self._bridges_ready: set[str] = set()
        self._forwarding = False
        self._restoring = restoring
        self._after_restore: list[Deferred[None]] = []
        #: Attaches, connects and detaches under way: the networks each
        #: works on (L{forget_network} waits for them).
        self._working: list[set[str]] = []
        self._quiet: list[Deferred[None]] = []
        self._clock = clock

    # --- state -----------------------------------------------------------------

    def _save(self, att: Attached) -> None:
        value = {
            "Name": att.name,
            "Hostname": att.hostname,
            "Netns": att.netns,
            "Joined": [_endpoint_json(j) for j in att.joined.values()],
            "Ports": [
                [b.proto, b.host_ip, b.host_port, b.container_ip, b.container_port]
                for b in att.bindings
            ],
            "Dns": att.dns,
            "DnsServers": att.dns_servers,
        }
        store.atomic_write(
            self._state_dir / f"{att.container_id}.json",
            json.dumps(value).encode(),
            durable=False,
        )

    def _forget(self, container_id: str) -> None:
        (self._state_dir / f"{container_id}.json").unlink(missing_ok=True)

    def of(self, container_id: str) -> Attached | None:
        """What a running container has, if it is on a network."""
        return self._attached.get(container_id)

    def members(self, network_id: str) -> dict[str, Any]:
        """A network's running members, as inspect's C{Containers}."""
        found = {}
        for att in self._attached.values():
            joined = att.joined.get(network_id)
            if joined is None:
                continue
            ep = joined.endpoint
            found[att.container_id] = {
                "Name": att.name,
                "EndpointID": _endpoint_id(att.container_id, network_id),
                "MacAddress": ep.mac,
                "IPv4Address": f"{ep.ip}/{ep.prefix}",
                "IPv6Address": "",
            }
        return found

    def users(self, network_id: str) -> list[str]:
        """The running containers on a network."""
        return [
            a.container_id for a in self._attached.values() if network_id in a.joined
        ]

    def _specs(self) -> list[Any]:
        """Every bridge network in use or defined, for the firewall."""
        return [r.spec for r in self._networks.all() if r.driver == "bridge"]

    async def _apply_firewall(self) -> None:
        await self._firewall.apply(self._specs(), list(self._ports.bindings()))

    # --- start and exit -------------------------------------------------------

    async def attach(self, request: Request) -> NetPlan:
        """
        Plumb C{request}'s container before it runs: its namespace,
        interfaces, ports, firewall and resolver; undone if any step fails.

        @raise SystemError_: A step failed (the plugin's, nft's words).
        @raise DockerError: A port is taken (dockerd's text).
        """
        await self._restored()
        networks = {rec.id for rec, *_ in request.networks}
        self._check_networks(networks)
        with self._work(networks):
            return await self._attach(request)

    async def _attach(self, request: Request) -> NetPlan:
        cid = request.container_id
        if not self._forwarding:
            # Before any CNI run: the bridge plugin turns it on too, and
            # the value found must be the one a clean stop gives back.
            self._firewall.enable_forwarding()
            self._forwarding = True
        path = self._netns_dir / cid
        att = Attached(cid, request.name, request.hostname, str(path))
        att.dns_servers = list(request.dns_servers)
        self._attached[cid] = att
        try:
            await self._netns.create(path)
            await self._cni.loopback(path)
            for index, (rec, aliases, ip, mac) in enumerate(request.networks):
                await self._join(att, rec, f"eth{index}", aliases, ip=ip, mac=mac)
                att.joined[rec.id].links = dict(request.links.get(rec.id) or {})
            first = request.networks[0][0] if request.networks else None
            if request.ports and first is not None and not first.internal:
                ip = str(att.joined[first.id].endpoint.ip)
                att.bindings = self._reserve(att, first, request.ports, ip)
            # Unchanged text costs no nft run: the masquerade of a bridge's
            # first container, ports, new networks all go through here.
            await self._apply_firewall()
            await self._flush(att.bindings)
            if any(not r.predefined for r, *_ in request.networks):
                await self._dns.attach(cid, path)
                att.dns = True
            # Removed while it was plumbed: the container must not run on it.
            self._check_networks(set(att.joined))
        except BaseException:
            await self.detach(cid)
            raise
        self._save(att)
        return self.plan(att)

    def _reserve(
        self,
        att: Attached,
        rec: NetworkRecord,
        ports: list[tuple[str, str, int, int, int]],
        ip: str,
    ) -> list[PortBinding]:
        requests = [
            PortRequest(proto, host_ip, start, cport, ip, host_port_end=end)
            for proto, host_ip, start, end, cport in ports
        ]
        try:
            bound: list[PortBinding] = self._ports.reserve(att.container_id, requests)
        except SystemError_ as e:
            raise external_connectivity_error(
                att.name, _endpoint_id(att.container_id, rec.id), e
            ) from None
        return bound

    async def _join(
        self,
        att: Attached,
        rec: NetworkRecord,
        ifname: str,
        aliases: list[str],
        *,
        ip: str,
        mac: str,
        default_route: bool | None = None,
    ) -> None:
        endpoint: Endpoint = await self._cni.add(
            Path(att.netns), att.container_id, ifname, rec.spec,
            ip=ip or None, mac=mac or None, default_route=default_route,
        )  # fmt: skip
        att.joined[rec.id] = Joined(rec.id, endpoint, list(aliases), spec=rec.spec)
        if rec.bridge not in self._bridges_ready:
            # The host state a bridge needs (the firewall's to undo).
            self._firewall.enable_route_localnet(rec.bridge)
            if not rec.spec.icc:
                self._firewall.enable_bridge_netfilter()
            self._bridges_ready.add(rec.bridge)
        self._event("connect", rec, att.container_id)

    async def _flush(self, bindings: list[PortBinding]) -> None:
        """Forget UDP flows to C{bindings}' ports (it only logs failures)."""
        if self._flush_udp is not None and any(b.proto == "udp" for b in bindings):
            await self._flush_udp(bindings)

    def _event(self, action: str, rec: NetworkRecord, container_id: str) -> None:
        if self._publish is not None:
            self._publish(
                "network",
                action,
                rec.id,
                {"container": container_id, "name": rec.name, "type": rec.driver},
            )

    async def detach(self, container_id: str) -> None:
        """
        Undo a container's plumbing (exit, failed start); never raises.

        The container stops counting as a network's user at once (C{docker
        rm -f} answers before this is done, and a C{network rm} may follow
        at once): its networks are looked up now, so that their removal
        meanwhile does not skip the DELs that free its addresses, and the
        removal waits for them before it takes the bridge
        (L{forget_network}).
        """
        att = self._attached.pop(container_id, None)
        if att is None:
            return
        with self._work(set(att.joined)):
            await self._detach(att)

    async def _detach(self, att: Attached) -> None:
        container_id = att.container_id
        on = [
            (joined, spec)
            for joined in reversed(list(att.joined.values()))
            if (spec := self._spec(joined)) is not None
        ]
        if att.dns:
            try:
                await self._dns.detach(container_id)
            except Exception:
                _log.failure("dns detach {id}", id=container_id)
        self._ports.release(container_id)
        released = list(att.bindings)
        path = Path(att.netns) if att.netns else None
        for joined, spec in on:
            try:
                await self._cni.delete(path, container_id, joined.endpoint.ifname, spec)
            except DockerError as e:
                _log.warn("cni del {id}: {e}", id=container_id, e=e.message)
            if self._publish is not None:
                self._publish("network", "disconnect", spec.id,
                              {"container": container_id, "name": spec.name,
                               "type": "bridge"})  # fmt: skip
        if att.joined:
            try:
                await self._apply_firewall()
            except DockerError as e:
                _log.warn("firewall: {e}", e=e.message)
            await self._flush(released)
        if path is not None:
            try:
                await self._netns.remove(path)
            except Exception:
                _log.failure("removing netns {path}", path=path)
        self._forget(container_id)

    def _spec(self, joined: Joined) -> NetworkSpec | None:
        """The network C{joined} is on, removed or not (C{None}: unknown)."""
        try:
            return self._networks.find(joined.network_id).spec
        except NotFound:
            return joined.spec

    def _check_networks(self, network_ids: set[str]) -> None:
        """
        @raise NotFound: One of the networks is gone (removed while a
            start or a connect waited for its turn), as dockerd says it.
        """
        for network_id in sorted(network_ids):
            if not _exists(self._networks, network_id):
                raise NotFound(f"network {network_id} not found")

    @contextmanager
    def _work(self, network_ids: set[str]) -> Iterator[None]:
        """Plumbing on C{network_ids} under way (L{forget_network} waits)."""
        networks = set(network_ids)
        self._working.append(networks)
        try:
            yield
        finally:
            self._working.remove(networks)
            quiet, self._quiet = self._quiet, []
            for waiter in quiet:
                waiter.callback(None)

    def _in_use(self, network_id: str) -> bool:
        """Whether plumbing on a network is under way or still in place."""
        return any(network_id in networks for networks in self._working) or any(
            network_id in att.joined for att in self._attached.values()
        )

    # --- connect and disconnect while running -----------------------------------

    async def connect(
        self,
        container_id: str,
        rec: NetworkRecord,
        aliases: list[str],
        ip: str,
        links: dict[str, str] | None = None,
    ) -> None:
        """
        Join a running container to C{rec} (the next C{ethN}), with its
        C{links} there (L{Joined.links}).
        """
        await self._restored()
        self._check_networks({rec.id})
        with self._work({rec.id}):
            await self._connect(container_id, rec, aliases, ip, links)

    async def _connect(
        self,
        container_id: str,
        rec: NetworkRecord,
        aliases: list[str],
        ip: str,
        links: dict[str, str] | None,
    ) -> None:
        att = self._attached.get(container_id)
        if att is None or not att.netns:
            raise SystemError_("container is not on a bridge network")
        if rec.id in att.joined:
            raise Conflict(
                f"endpoint with name {att.name} already exists in network {rec.name}"
            )
        ifname = f"eth{_next_index(att)}"
        # The default route goes through the new network only if the
        # container has none (a disconnect may have moved or dropped it).
        routed = rec.internal or await self._has_default_route(att)
        await self._join(
            att, rec, ifname, aliases, ip=ip, mac="", default_route=not routed
        )
        att.joined[rec.id].links = dict(links or {})
        if not rec.predefined and not att.dns:
            await self._apply_firewall()
            await self._dns.attach(container_id, Path(att.netns))
            att.dns = True
        self._save(att)

    async def disconnect(self, container_id: str, rec: NetworkRecord) -> None:
        """Take a running container off C{rec}."""
        att = self._attached.get(container_id)
        if att is None or rec.id not in att.joined:
            raise InvalidParameter(
                f"container {container_id} is not connected to network {rec.name}"
            )
        joined = att.joined.pop(rec.id)
        with self._work({rec.id}):
            await self._cni.delete(
                Path(att.netns), container_id, joined.endpoint.ifname, rec.spec
            )
        self._event("disconnect", rec, container_id)
        self._save(att)
        await self._keep_default_route(att)

    async def _has_default_route(self, att: Attached) -> bool:
        result = await self._netns.run(
            Path(att.netns), ["ip", "-4", "route", "show", "default"]
        )
        return result.code == 0 and bool(result.out.strip())

    async def _keep_default_route(self, att: Attached) -> None:
        """
        After a disconnect took the container's default route with it, the
        first of its other networks that leads out gives it one (as
        dockerd moves its default gateway).
        """
        if await self._has_default_route(att):
            return
        for joined in att.joined.values():
            try:
                rec = self._networks.find(joined.network_id)
            except NotFound:
                continue
            if rec.internal:
                continue
            ep = joined.endpoint
            argv = ["ip", "-4", "route", "add", "default"]
            result = await self._netns.run(
                Path(att.netns), [*argv, "via", str(ep.gateway), "dev", ep.ifname]
            )
            if result.code != 0:
                _log.warn(
                    "default route of {id} through {dev}: {err}",
                    id=att.container_id,
                    dev=ep.ifname,
                    err=result.err.decode("utf-8", "replace").strip(),
                )
            return

    # --- what the container's bundle and views need -------------------------------

    def plan(self, att: Attached) -> NetPlan:
        """The bundle's part of C{att}."""
        first = next(iter(att.joined.values()), None)
        default = self._networks.default()
        return NetPlan(
            kind="netns",
            netns=att.netns,
            ip=str(first.endpoint.ip) if first else "",
            internal_dns=att.dns,
            host_gateway=str(default.gateway) if default and default.gateway else "",
        )

    def lookup(self, asker: str, name: str) -> list[str] | None:
        """
        The embedded DNS's question: the addresses C{name} has for the
        container C{asker}, on the user networks they share; C{None} for
        a name that is not a container's (forwarded). The asker's own
        links come first: an alias of one is the other container's name
        (as libnetwork's sandbox resolves its endpoints' aliases first).
        """
        att = self._attached.get(asker)
        if att is None:
            return None
        wanted = name.rstrip(".").lower()
        for linked in (True, False):
            found: list[str] = []
            for network_id, mine in att.joined.items():
                try:
                    rec = self._networks.find(network_id)
                except NotFound:
                    continue
                if rec.predefined:
                    continue
                bare = wanted.removesuffix("." + rec.name.lower())
                asked = {wanted, bare}
                targets = [t for a, t in mine.links.items() if a.lower() in asked]
                if linked != bool(targets):
                    # An alias is looked for as the container it names only.
                    continue
                if linked:
                    asked = {targets[0].lower()}
                found += self._members_named(network_id, asked)
            if found:
                return found
        return None

    def _members_named(self, network_id: str, asked: set[str]) -> list[str]:
        """The addresses on a network of its members that any of C{asked} names."""
        found = []
        for other in self._attached.values():
            joined = other.joined.get(network_id)
            if joined is None:
                continue
            names = {
                other.name.lower(),
                other.container_id[:12],
                other.hostname.lower(),
            }
            names |= {a.lower() for a in joined.aliases}
            if asked & names:
                found.append(str(joined.endpoint.ip))
        return found

    def upstreams(self, container_id: str) -> list[str]:
        """Where the embedded DNS forwards a container's other names."""
        att = self._attached.get(container_id)
        if att is None:
            return []
        internal_only = all(
            self._networks.find(j.network_id).internal
            for j in att.joined.values()
            if _exists(self._networks, j.network_id)
        )
        if internal_only:
            return []
        return att.dns_servers or host_nameservers()

    # --- restore -----------------------------------------------------------------

    async def restore(self, running: Mapping[str, str]) -> None:
        """
        After a daemon restart: take back what running containers have
        (C{running}: container ID -> name), reserve their ports, re-render
        the firewall and reopen their resolvers; undo what dead ones left,
        and what starts the last daemon died in the middle of left
        (interfaces, addresses, namespace files: L{_sweep_cni}).
        """
        try:
            await self._restore(running)
        finally:
            self._restoring = False
            waiting, self._after_restore = self._after_restore, []
            for waiter in waiting:
                waiter.callback(None)

    async def _restored(self) -> None:
        """Return once a coming L{restore} is done (at once if none is)."""
        if self._restoring:
            waiter: Deferred[None] = Deferred()
            self._after_restore.append(waiter)
            await waiter

    async def _restore(self, running: Mapping[str, str]) -> None:
        self._state_dir.mkdir(parents=True, exist_ok=True)
        self._netns_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(self._state_dir.glob("*.json")):
            cid = path.stem
            if not _is_container_id(cid):
                continue  # the firewall's sysctls.json
            try:
                value = json.loads(path.read_bytes())
                att = Attached(cid, value["Name"], value["Hostname"], value["Netns"])
                for item in value.get("Joined") or []:
                    joined = _endpoint_from(cid, item)
                    att.joined[joined.network_id] = joined
                att.dns = bool(value.get("Dns"))
                att.dns_servers = list(value.get("DnsServers") or [])
                ports = [tuple(p) for p in value.get("Ports") or []]
            except (OSError, ValueError, KeyError) as e:
                _log.error("unreadable network state {p}: {e}", p=path, e=e)
                continue
            self._attached[cid] = att
            if cid not in running:
                await self.detach(cid)
                continue
            att.name = running[cid]
            bindings = [
                PortBinding(str(p[0]), str(p[1]), int(p[2]), str(p[3]), int(p[4]), cid)
                for p in ports
            ]
            if bindings:
                lost = self._ports.adopt(cid, bindings)
                att.bindings = [b for b in bindings if b not in lost]
            if att.dns:
                try:
                    await self._dns.attach(cid, Path(att.netns))
                except DockerError as e:
                    _log.error("dns of {id}: {e}", id=cid, e=e.message)
        await self._sweep_cni()
        for leftover in sorted(self._netns_dir.iterdir()):
            if leftover.name not in self._attached:
                try:
                    await self._netns.remove(leftover)
                except Exception:
                    _log.failure("removing netns {p}", p=leftover)
        if any(a.bindings for a in self._attached.values()) or any(
            not r.predefined for r in self._networks.all() if r.driver == "bridge"
        ):
            await self._apply_firewall()

    async def _sweep_cni(self) -> None:
        """
        Free every interface and address CNI holds that no running
        container's state names: a daemon killed in the middle of a start
        (or a connect) made them and never wrote the state that a detach
        undoes. The cached ADDs (a start cut short after its ADD) and
        host-local's own records (cut short inside it) are both read; a
        DEL frees by container and interface, with or without the cache.
        """
        stale: dict[tuple[str, str, str], None] = {}
        for held in [*self._cni.attachments(), *self._cni.allocations()]:
            key = (held.network_id, held.container_id, held.ifname)
            if _is_container_id(held.container_id) and not self._holds(*key):
                stale[key] = None
        for network_id, cid, ifname in stale:
            try:
                rec = self._networks.find(network_id)
            except NotFound:
                _log.warn(
                    "address of {id} on removed network {net} left",
                    id=cid,
                    net=network_id,
                )
                continue
            _log.info(
                "freeing {id}'s {ifname} on {net}, left by a crash",
                id=cid[:12],
                ifname=ifname,
                net=rec.name,
            )
            try:
                await self._cni.delete(self._netns_dir / cid, cid, ifname, rec.spec)
            except DockerError as e:
                _log.warn("cni del {id}: {e}", id=cid, e=e.message)

    def _holds(self, network_id: str, container_id: str, ifname: str) -> bool:
        """Whether a running container's state has this interface."""
        att = self._attached.get(container_id)
        joined = att.joined.get(network_id) if att is not None else None
        return joined is not None and joined.endpoint.ifname == ifname

    async def forget_network(self, rec: NetworkRecord) -> None:
        """
        A network is removed: its bridge goes, the firewall forgets it;
        once no start, connect or exit is plumbing on it any more and
        every container on it has left (C{docker rm -f} answers before its
        container's exit is undone, and a C{network rm} may follow at once,
        as compose down does), for at most L{_DRAIN} seconds.
        """
        deadline = None if self._clock is None else self._clock.seconds() + _DRAIN
        while self._in_use(rec.id):
            if deadline is not None and self._clock is not None:
                left = deadline - self._clock.seconds()
                if left <= 0:
                    _log.warn("network {n} removed while still in use", n=rec.name)
                    break
            waiter: Deferred[None] = Deferred()
            self._quiet.append(waiter)
            if deadline is not None and self._clock is not None:
                waiter.addTimeout(left, self._clock, onTimeoutCancel=lambda *_: None)
            await waiter
        self._bridges_ready.discard(rec.bridge)
        await self._cni.remove_bridge(rec.spec)
        await self._apply_firewall()

    async def stop(self) -> None:
        """
        A clean daemon stop: with no container on a bridge network left
        running, the host is given back what networking changed (the
        nftables table, the sysctls, the bridges); running containers keep
        all of it, and the next daemon takes it over.
        """
        if self._attached:
            return
        for rec in self._networks.all():
            if rec.driver == "bridge":
                try:
                    await self._cni.remove_bridge(rec.spec)
                except DockerError as e:
                    _log.warn("removing bridge {b}: {e}", b=rec.bridge, e=e.message)
        self._bridges_ready.clear()
        self._forwarding = False
        try:
            await self._firewall.remove()
        except DockerError as e:
            _log.warn("removing the firewall table: {e}", e=e.message)


def _is_container_id(value: str) -> bool:
    """A full 64-hex container ID (never a path's other parts)."""
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _next_index(att: Attached) -> int:
    used = {int(j.endpoint.ifname.removeprefix("eth")) for j in att.joined.values()}
    index = 0
    while index in used:
        index += 1
    return index


def _exists(networks: NetworkService, network_id: str) -> bool:
    try:
        networks.find(network_id)
    except NotFound:
        return False
    return True


def _endpoint_id(container_id: str, network_id: str) -> str:
    """A stable 64-hex endpoint ID for a container on a network."""
    import hashlib  # noqa: PLC0415

    return hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()


def endpoint_id(container_id: str, network_id: str) -> str:
    """See L{_endpoint_id}: the ID inspect shows."""
    return _endpoint_id(container_id, network_id)


def host_nameservers(path: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The daemon's own resolvers: where container names' others go."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    return [
        line.split()[1]
        for line in lines
        if line.startswith("nameserver") and len(line.split()) > 1
    ]


def names_of(values: Iterable[str]) -> list[str]:
    """Aliases as given, without empties and repeats, in order."""
    seen: list[str] = []
    for value in values:
        if value and value not in seen:
            seen.append(value)
    return seen
