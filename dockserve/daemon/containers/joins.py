# -*- test-case-name: tests.daemon.containers.test_joining -*-
"""
What a start found out beyond the container's own record, for the bundle
builder: the namespaces of other containers it joins (C{--ipc
container:X}, C{--pid container:X}), where its C{/dev/shm} comes from,
the host's devices it is given and what its links add to its
environment.

The start (L{dockserve.daemon.containers.joining}) resolves these while
it holds the daemon's state (other containers, their processes and
networks) and passes them to the builder in the record it builds from,
under L{VIEW_KEY} of its C{HostConfig}: a bundle made for anything but a
start (C{docker cp} of a stopped container) has none and joins nothing.
"""

from collections.abc import Iterable
from typing import Any

from attrs import asdict, field, frozen

#: The C{HostConfig} key of the record view that carries a start's L{Joins}.
VIEW_KEY = "Dockserve.Joins"


def _dicts(values: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    return tuple(values)


def _texts(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@frozen
class Joins:
    """
    A start's view of what lies outside the container.

    @ivar ipc_namespace: C{/proc/PID/ns/ipc} of the container whose IPC
        namespace it joins; C{""} for one of its own (or the host's).
    @ivar pid_namespace: C{/proc/PID/ns/pid} likewise.
    @ivar shm: The host directory bound at its C{/dev/shm} (its own
        shareable one, the one it joins, or the host's); C{""} for a
        private tmpfs (or none).
    @ivar own_shm: C{shm} is its own (C{--ipc shareable}): a tmpfs the
        builder mounts there first.
    @ivar devices: C{linux.devices} (L{dockserve.daemon.containers.devices.resolve}).
    @ivar device_rules: C{linux.resources.devices}; empty: the default.
    @ivar link_env: Its links' variables (ahead of its own C{Env}).
    """

    ipc_namespace: str = ""
    pid_namespace: str = ""
    shm: str = ""
    own_shm: bool = False
    devices: tuple[dict[str, Any], ...] = field(default=(), converter=_dicts)
    device_rules: tuple[dict[str, Any], ...] = field(default=(), converter=_dicts)
    link_env: tuple[str, ...] = field(default=(), converter=_texts)

    def into(self, host_config: dict[str, Any]) -> dict[str, Any]:
        """A copy of C{host_config} that carries these."""
        return {**host_config, VIEW_KEY: asdict(self)}


def of(host_config: dict[str, Any]) -> Joins | None:
    """The L{Joins} a start put in C{host_config}; C{None} if none did."""
    value = host_config.get(VIEW_KEY)
    if not isinstance(value, dict):
        return None
    return Joins(**value)
