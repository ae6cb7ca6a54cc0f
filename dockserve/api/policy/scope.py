# -*- test-case-name: tests.api.policy.test_scope -*-
"""
Owners: each principal's containers, volumes and networks carry its owner
label, and a principal whose policy has C{scope = "own"} sees and touches
only those.

Who owns what is asked of the backend when needed (a container's
C{Config.Labels}, a volume's or network's C{Labels}) and remembered, so
that an object's last events (C{destroy}) still reach its owner after it
is gone. The predefined networks (C{bridge}, C{host}, C{none}) belong to
no one and are everyone's to use.
"""

import functools
import json
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from attrs import frozen

from dockserve.api.params import query_filters
from dockserve.api.policy.body import fold, values
from dockserve.errors import DockerError

#: The networks every daemon has, shared by all.
PREDEFINED_NETWORKS: Final = frozenset({"bridge", "host", "none"})

#: How many objects' owners are remembered.
REMEMBERED: Final = 4096


@frozen
class Owned:
    """
    An object and its owner.

    @ivar id: Its full ID (a volume's name).
    @ivar owner: Its owner label's value, or C{None}.
    @ivar shared: A predefined network: anyone may use it.
    @ivar record: What the backend said of it (a container's inspect).
    """

    id: str
    owner: str | None
    shared: bool = False
    record: Mapping[str, Any] | None = None

    def visible_to(self, owner: str) -> bool:
        """Whether C{owner}'s scope includes it."""
        return self.shared or self.owner == owner


def _labels(record: Mapping[str, Any], *where: str) -> Mapping[str, Any]:
    value: Any = record
    for key in where:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value if isinstance(value, Mapping) else {}


class Owners:
    """
    The owners of containers, volumes and networks, asked of C{backend}.

    @ivar backend: Provides C{containers}, C{volumes}, C{networks} and
        C{images} as the API's L{dockserve.api.backend.Backend} does.
    @ivar label: The owner label's key.
    """

    def __init__(self, backend: Any, label: str) -> None:
        self.backend = backend
        self.label = label
        self._known: OrderedDict[tuple[str, str], str | None] = OrderedDict()

    def remember(self, kind: str, object_id: str, owner: str | None) -> None:
        """C{object_id} (a C{kind}) belongs to C{owner}."""
        key = (kind, object_id)
        self._known[key] = owner
        self._known.move_to_end(key)
        while len(self._known) > REMEMBERED:
            self._known.popitem(last=False)

    def _recall(self, kind: str, object_id: str) -> Owned | None:
        key = (kind, object_id)
        if key not in self._known:
            return None
        return Owned(object_id, self._known[key])

    def container(self, reference: str) -> Owned | None:
        """The container C{reference} names, or C{None} when there is none."""
        try:
            record = self.backend.containers.inspect(reference)
        except DockerError:
            return self._recall("container", reference)
        owned = Owned(
            str(record.get("Id", reference)),
            _labels(record, "Config", "Labels").get(self.label),
            record=record,
        )
        self.remember("container", owned.id, owned.owner)
        return owned

    def exec_container(self, exec_id: str) -> Owned | None:
        """The container of the exec instance C{exec_id}, or C{None}."""
        try:
            record = self.backend.containers.exec_inspect(exec_id)
        except DockerError:
            return None
        container = record.get("ContainerID")
        return self.container(container) if isinstance(container, str) else None

    def volume(self, name: str) -> Owned | None:
        """The volume C{name}, or C{None} when there is none."""
        try:
            record = self.backend.volumes.inspect(name)
        except DockerError:
            return self._recall("volume", name)
        owned = Owned(
            str(record.get("Name", name)), _labels(record, "Labels").get(self.label)
        )
        self.remember("volume", owned.id, owned.owner)
        return owned

    def network(self, reference: str) -> Owned | None:
        """The network C{reference} names, or C{None} when there is none."""
        try:
            record = self.backend.networks.inspect(reference)
        except DockerError:
            return self._recall("network", reference)
        owner = _labels(record, "Labels").get(self.label)
        shared = owner is None and record.get("Name") in PREDEFINED_NETWORKS
        owned = Owned(str(record.get("Id", reference)), owner, shared)
        self.remember("network", owned.id, owned.owner)
        return owned

    def shows_event(self, owner: str) -> Callable[[Mapping[str, Any]], bool]:
        """
        Which events C{owner}'s scope shows: its containers' (their labels
        are in the event), its volumes' and networks' and what its
        containers do on shared ones; images and the daemon are everyone's.
        """

        def shows(message: Mapping[str, Any]) -> bool:
            kind = message.get("Type")
            actor = message.get("Actor")
            actor = actor if isinstance(actor, Mapping) else {}
            attributes = _labels(actor, "Attributes")
            actor_id = str(actor.get("ID", ""))
            if kind == "container":
                return attributes.get(self.label) == owner
            if kind not in {"volume", "network"}:
                return True
            lookup = self.volume if kind == "volume" else self.network
            found = lookup(actor_id)
            if found is not None and found.owner == owner:
                return True
            member = attributes.get("container")
            if isinstance(member, str) and member:
                container = self.container(member)
                return container is not None and container.owner == owner
            return False

        return shows


def add_label_filter(request: Any, label: str, owner: str) -> None:
    """
    Narrow a list or prune request to C{owner}'s objects: its C{filters}
    get C{label=LABEL=OWNER}, which the daemon ANDs with the client's own.

    @raise dockserve.errors.InvalidParameter: For filters that are not
        JSON, as the handler would.
    """
    if not request.args.get(b"filters"):
        request.args[b"filters"] = [_owner_filter(label, owner)]
        return
    filters = query_filters(request)
    filters.setdefault("label", []).append(f"{label}={owner}")
    request.args[b"filters"] = [json.dumps(filters).encode()]


@functools.lru_cache(maxsize=256)
def _owner_filter(label: str, owner: str) -> bytes:
    """The filters of a list that had none, made once per owner."""
    return json.dumps({"label": [f"{label}={owner}"]}).encode()


def inject_label(body: dict[str, Any], label: str, owner: str) -> None:
    """
    Give a create body's C{Labels} (in whatever case it is written) the
    owner label, replacing any the client wrote.
    """
    keys = [k for k in body if k.casefold() == "labels"]
    if not keys:
        body["Labels"] = {label: owner}
        return
    for key in keys:
        value = body[key]
        if value is None:
            body[key] = {label: owner}
        elif isinstance(value, dict):
            value[label] = owner


def _container_reference(text: str) -> str:
    """C{name:alias} (a link), C{name:ro} (volumes-from) -> C{name}."""
    return text.split(":", 1)[0].lstrip("/")


def references(body: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """
    The containers, networks and named volumes a create body names, as
    C{(kind, reference)}: network modes, C{container:} namespaces, links,
    volumes-from, named volume binds and mounts, endpoint networks.
    """
    fields = fold(body)
    for host in fields.get("hostconfig", []):
        if isinstance(host, dict):
            yield from _host_references(fold(host))
    for networking in fields.get("networkingconfig", []):
        for endpoints in values(networking, "EndpointsConfig"):
            if isinstance(endpoints, dict):
                for network in endpoints:
                    if network not in PREDEFINED_NETWORKS:
                        yield "network", network


def _host_references(host: dict[str, list[Any]]) -> Iterator[tuple[str, str]]:
    """L{references} in a create body's folded C{HostConfig}."""
    for key in ("networkmode", "pidmode", "ipcmode"):
        for mode in host.get(key, []):
            if not isinstance(mode, str):
                continue
            if mode.startswith("container:"):
                yield "container", mode.removeprefix("container:")
            elif key == "networkmode" and mode not in _NOT_NETWORKS:
                yield "network", mode
    for key in ("volumesfrom", "links"):
        for item in host.get(key, []):
            for text in item if isinstance(item, list) else []:
                if isinstance(text, str) and text:
                    yield "container", _container_reference(text)
    for binds in host.get("binds", []):
        for bind in binds if isinstance(binds, list) else []:
            if isinstance(bind, str) and ":" in bind and not bind.startswith("/"):
                source = bind.split(":", 1)[0]
                if source:
                    yield "volume", source
    for mounts in host.get("mounts", []):
        for mount in mounts if isinstance(mounts, list) else []:
            kinds = values(mount, "Type")
            if any(isinstance(k, str) and k.lower() == "volume" for k in kinds):
                for source in values(mount, "Source"):
                    if isinstance(source, str) and source:
                        yield "volume", source


#: Network modes that name no user network.
_NOT_NETWORKS: Final = frozenset({"", "default", "bridge", "host", "none"})
