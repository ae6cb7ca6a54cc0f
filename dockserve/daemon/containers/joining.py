# -*- test-case-name: tests.daemon.containers.test_joining -*-
"""
The container service's side of a container's ties to others and to the
host, as dockerd 20.10 makes them: legacy links (C{--link}), another
container's IPC or PID namespace (C{--ipc container:X}, C{--pid
container:X}, C{--ipc shareable}), and the host's devices (C{--device},
C{--device-cgroup-rule}).

At create the other containers are looked for and kept by name or ID
(C{HostConfig.Links} as C{/other:/me/alias}, C{IpcMode} as
C{container:<id>}); at each start they must be running, and what the
start finds of them (their namespaces' paths, their addresses and
environment, the host's device nodes) goes to the bundle builder as a
L{dockserve.daemon.containers.joins.Joins}. Every refusal is dockerd's
text and status (a 400 at create, never a 404 the CLI would take for a
missing image; a 500 at start, with exit code 128 kept in the state).
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import evolve

from dockserve.daemon.containers import devices, links, shm
from dockserve.daemon.containers.joins import Joins
from dockserve.daemon.containers.table import Container, ContainerParts
from dockserve.errors import DockerError, InvalidParameter, NotFound, SystemError_

if TYPE_CHECKING:
    from dockserve.daemon.containers.record import ContainerRecord
    from dockserve.daemon.network.attach import Attachments
    from dockserve.daemon.network.model import NetPlan
    from dockserve.daemon.network.service import NetworkService

#: Network modes that are no user-defined network (where links are kept).
_PREDEFINED_MODES = frozenset({"", "default", "bridge", "host", "none"})

#: How deep C{--ipc container:X} chains are followed for X's C{/dev/shm}.
_MAX_CHAIN = 16


def _on_default_bridge(rec: ContainerRecord) -> bool:
    """Whether C{rec}'s container is (to be) on the default bridge."""
    networking = rec.networking_config or {}
    endpoints = networking.get("EndpointsConfig") or {}
    if not endpoints and not networking.get("Disconnected"):
        mode = rec.host_config.get("NetworkMode") or "default"
        return mode in {"bridge", "default"}
    return any(name in {"bridge", "default"} for name in endpoints)


def _running(rec: ContainerRecord) -> bool:
    """As dockerd's C{IsRunning}: paused, and waiting to restart, count."""
    return rec.state.status in {"running", "paused", "restarting"}


class ContainerJoining(ContainerParts):
    """Links, joined namespaces and devices of the container service."""

    _networks: NetworkService | None
    _attachments: Attachments | None

    # --- create --------------------------------------------------------------

    def _joined_at_create(self, host_config: dict[str, Any], name: str) -> None:
        """
        Look for the containers a new container's C{host_config} names and
        keep them as dockerd does: C{IpcMode}/C{PidMode} C{container:X} by
        X's ID, C{Links} as C{/other:/name/alias} (none on a user-defined
        network, where links are C{EndpointsConfig}'s).

        @param name: The new container's name, with its slash.
        @raise InvalidParameter: A container that is not there (dockerd's
            400), links to one on the host's network.
        @raise SystemError_: A link that is not C{other[:alias]} (dockerd's 500).
        """
        for key in ("IpcMode", "PidMode"):
            mode = str(host_config.get(key) or "")
            if mode.startswith("container:"):
                other = self._other(mode.removeprefix("container:"))
                host_config[key] = f"container:{other.id}"
        if host_config.get("Links") is None:
            return
        mode = str(host_config.get("NetworkMode") or "")
        if mode not in _PREDEFINED_MODES and not mode.startswith("container:"):
            host_config["Links"] = None
            return
        kept: list[str] = []
        for value in host_config.get("Links") or []:
            reference, alias = links.parse(str(value))
            target = self._link_target(reference)
            link = links.Link(target.record.name, links.link_name(name, alias))
            if all(k.partition(":")[2] != link.name for k in kept):
                kept.append(link.stored())  # a second use of a name is ignored
        host_config["Links"] = kept or None

    def _other(self, reference: str, wrap: str = "") -> Container:
        """
        The container C{reference} names; a 404 becomes a 400 (the CLI
        would pull the image on a 404 from create).
        """
        try:
            return self._get(reference)
        except NotFound as e:
            raise InvalidParameter(wrap + e.message) from None
        except DockerError as e:
            raise type(e)(wrap + e.message) from None

    def _link_target(self, reference: str) -> Container:
        """The container a new link names: the one whose network it shares."""
        other = self._other(reference, f"could not get container for {reference}: ")
        for _ in range(_MAX_CHAIN):
            mode = str(other.record.host_config.get("NetworkMode") or "")
            if not mode.startswith("container:"):
                break
            owner = mode.removeprefix("container:")
            other = self._other(owner, f"Could not get container for {owner}: ")
        if other.record.host_config.get("NetworkMode") == "host":
            raise InvalidParameter(
                "conflicting options: host type networking can't be used with "
                "links. This would result in undefined behavior"
            )
        return other

    # --- start -----------------------------------------------------------------

    def _by_name(self, name: str) -> Container | None:
        found = self._names.get(name)
        return self._containers.get(found) if found is not None else None

    def _default_bridge_id(self) -> str | None:
        """The default bridge's ID, when this daemon has one and networking."""
        if self._networks is None or self._attachments is None:
            return None
        default = self._networks.default()
        return default.id if default is not None else None

    async def _joins(self, c: Container) -> Joins:
        """
        Check, before a start plumbs anything, the containers it joins or
        links to, and find what it needs of them and of the host's devices.

        @raise SystemError_: dockerd's 500s (a container not running, not
            shareable, not on the default bridge).
        @raise devices.DeviceError: A device that cannot be given.
        """
        rec = c.record
        if self._default_bridge_id() is not None and _on_default_bridge(rec):
            self._check_links(rec)
        ipc_namespace, shm_dir, own_shm = self._ipc(c)
        pid_namespace = self._pid(rec)
        found: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
        host = rec.host_config
        if host.get("Devices") or host.get("DeviceCgroupRules"):
            found = await self._blocking(lambda: devices.resolve(host))
        return Joins(
            ipc_namespace=ipc_namespace,
            pid_namespace=pid_namespace,
            shm=shm_dir,
            own_shm=own_shm,
            devices=found[0],
            device_rules=found[1],
        )

    def _check_links(self, rec: ContainerRecord) -> None:
        """
        A start's links on the default bridge: every other container on
        it, then running (dockerd's order). One that is gone counts as not
        running, as with dockerd.
        """
        kept = links.kept(rec.host_config.get("Links"))
        for link in kept:
            other = self._by_name(link.target)
            if other is not None and not _on_default_bridge(other.record):
                raise SystemError_(
                    f"Cannot link to {other.record.name}, as it does not belong to "
                    "the default network"
                )
        for link in kept:
            other = self._by_name(link.target)
            if other is None or not _running(other.record):
                raise SystemError_(
                    f"Cannot link to a non running container: {link.target} AS "
                    f"{link.name}"
                )

    def _joinable(self, prefix: str, other_id: str) -> Container:
        """
        The running container whose namespace a start joins.

        @param prefix: dockerd's words before its reason.
        """
        other = self._containers.get(other_id)
        if other is None:
            raise SystemError_(f"{prefix}No such container: {other_id}")
        if other.record.state.status == "restarting":
            raise SystemError_(
                f"{prefix}Container {other.id} is restarting, wait until the "
                "container is running"
            )
        if not _running(other.record) or not other.record.state.pid:
            raise SystemError_(f"{prefix}container {other.id} is not running")
        return other

    def _ipc(self, c: Container) -> tuple[str, str, bool]:
        """
        C{(namespace, shm, own)}: the IPC namespace a start joins, the host
        directory bound at its C{/dev/shm}, whether that is its own.
        """
        mode = str(c.record.host_config.get("IpcMode") or "")
        if mode == "shareable":
            return "", str(shm.path(c.directory)), True
        if not mode.startswith("container:"):
            return "", "", False
        other_id = mode.removeprefix("container:")
        prefix = f"can't join IPC of container {other_id}: "
        other = self._joinable(prefix, other_id)
        source = self._shm_of(other)
        if not source or not Path(source).is_dir():
            raise SystemError_(
                f"{prefix}non-shareable IPC (hint: use IpcMode:shareable for the "
                "donor container)"
            )
        return f"/proc/{other.record.state.pid}/ns/ipc", source, False

    def _shm_of(self, other: Container) -> str:
        """The host directory of a running container's C{/dev/shm}, if shareable."""
        for _ in range(_MAX_CHAIN):
            mode = str(other.record.host_config.get("IpcMode") or "")
            if mode == "shareable":
                return str(shm.path(other.directory))
            if mode == "host":
                return "/dev/shm"
            found = self._containers.get(mode.removeprefix("container:"))
            if not mode.startswith("container:") or found is None:
                return ""
            other = found
        return ""

    def _pid(self, rec: ContainerRecord) -> str:
        """The PID namespace a start joins (C{--pid container:X}), if any."""
        mode = str(rec.host_config.get("PidMode") or "")
        if not mode.startswith("container:"):
            return ""
        other_id = mode.removeprefix("container:")
        if other_id not in self._containers:
            raise SystemError_(
                f"cannot join PID of a non running container: {other_id}: "
                f"No such container: {other_id}"
            )
        other = self._joinable("", other_id)
        return f"/proc/{other.record.state.pid}/ns/pid"

    async def _linked(
        self, c: Container, joined: Joins, plan: NetPlan | None
    ) -> tuple[NetPlan | None, Joins]:
        """
        After a start plumbed its networks: on the default bridge, its
        links' C{/etc/hosts} lines and variables, and the containers that
        link to it told its new address.

        @raise SystemError_: A linked container not on the default bridge
            any more (dockerd's text).
        """
        bridge = self._default_bridge_id()
        attachments = self._attachments
        if bridge is None or attachments is None or plan is None:
            return plan, joined
        own = attachments.of(c.id)
        if own is None or bridge not in own.joined:
            return plan, joined
        await self._readdress_parents(c, str(own.joined[bridge].endpoint.ip))
        lines: list[tuple[str, str]] = []
        env: list[str] = []
        for link in links.kept(c.record.host_config.get("Links")):
            other = self._by_name(link.target)
            if other is None:
                continue
            att = attachments.of(other.id)
            if att is None or bridge not in att.joined:
                raise SystemError_(
                    f"container {other.id} not attached to default bridge network"
                )
            address = str(att.joined[bridge].endpoint.ip)
            config = other.record.config
            hostname = str(config.get("Hostname") or other.id[:12])
            names = links.hosts_names(link, hostname, other.record.name)
            lines.append((address, names))
            env += links.env(
                link, address, config.get("Env") or [], config.get("ExposedPorts") or {}
            )
        if lines:
            plan = evolve(plan, links=(*plan.links, *lines))
        return plan, evolve(joined, link_env=env)

    async def _readdress_parents(self, c: Container, address: str) -> None:
        """
        The running containers that link to C{c} get its C{address} in
        their C{/etc/hosts} (dockerd's parent update): it may have another
        one than at its last start.
        """
        files: list[tuple[Path, str]] = []
        for parent in list(self._containers.values()):
            if parent is c or not _running(parent.record):
                continue
            files += [
                (parent.directory / "hosts", link.alias)
                for link in links.kept(parent.record.host_config.get("Links"))
                if link.target == c.record.name
            ]
        if files:
            await self._in_thread(lambda: _rewrite_hosts(files, address))

    def _start_record(self, c: Container, joined: Joins) -> ContainerRecord:
        """The record a start's bundle is made from: its L{Joins} with it."""
        return evolve(c.record, host_config=joined.into(c.record.host_config))

    # --- docker rm --link, docker rename ----------------------------------------

    def remove_link(self, reference: str) -> None:
        """
        C{DELETE /containers/{parent/alias}?link=1} (C{docker rm --link}):
        the link goes from its container's C{HostConfig.Links}, and the
        alias from its C{/etc/hosts} if it runs.

        @raise NotFound: No such link, nor container.
        @raise SystemError_: A container's own name (dockerd's 500,
            C{Conflict, cannot remove the default link name of the container}).
        """
        name = "/" + reference.lstrip("/")
        parent_name, alias = posixpath.split(name)
        parent = self._by_name(parent_name) if parent_name != "/" else None
        if parent is not None:
            kept = links.kept(parent.record.host_config.get("Links"))
            found = [k for k in kept if k.name == name]
            if found and self._by_name(found[0].target) is not None:
                rest = [k.stored() for k in kept if k.name != name]
                host = {**parent.record.host_config, "Links": rest or None}
                self._save(parent, evolve(parent.record, host_config=host))
                if _running(parent.record):
                    _drop_hosts_alias(parent.directory / "hosts", alias)
                return
        self._get(reference)
        if parent_name == "/":
            raise SystemError_(
                "Conflict, cannot remove the default link name of the container"
            )
        raise NotFound(f"No such container: {reference}")

    def _links_renamed(self, old: str, new: str) -> None:
        """After a rename from C{old} to C{new}: the links that name either."""
        for c in list(self._containers.values()):
            kept = links.kept(c.record.host_config.get("Links"))
            changed = links.renamed(kept, old, new)
            if changed != kept:
                stored = [k.stored() for k in changed]
                host = {**c.record.host_config, "Links": stored}
                self._save(c, evolve(c.record, host_config=host))


def _rewrite_hosts(files: list[tuple[Path, str]], address: str) -> None:
    """Give each C{(hosts file, alias)} the alias's new address, in place."""
    for path, alias in files:
        try:
            text = path.read_text()
            changed = links.hosts_readdressed(text, alias, address)
            if changed != text:
                _write_in_place(path, changed)
        except OSError:
            continue


def _drop_hosts_alias(path: Path, alias: str) -> None:
    """A running container's C{/etc/hosts} without an alias's lines."""
    try:
        text = path.read_text()
        changed = links.hosts_without(text, alias)
        if changed != text:
            _write_in_place(path, changed)
    except OSError:
        return


def _write_in_place(path: Path, text: str) -> None:
    """
    Rewrite a file without replacing it: it is bound into a running
    container by its inode, so a new file would not be seen there.
    """
    with path.open("r+") as f:
        f.write(text)
        f.truncate()
