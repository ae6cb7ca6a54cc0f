# -*- test-case-name: tests.api.test_router -*-
"""
The one thing the API layer knows of what is behind it.

moby's consumer-side interface (C{daemon/server/router/*/backend.go}): the
handlers of each area name only the Protocol of that area, defined in the
area's own module. L{dockserve.daemon.daemon.Daemon} satisfies L{Backend};
so does L{dockserve.testing.backend.MemoryBackend}, and later the upstream
forwarder.
"""

from typing import Protocol

from dockserve.api.build import BuildBackend
from dockserve.api.containers import ContainerBackend
from dockserve.api.events import EventsBackend
from dockserve.api.images import ImageBackend
from dockserve.api.networks import NetworkBackend
from dockserve.api.system import SystemBackend
from dockserve.api.volumes import VolumeBackend


class Backend(Protocol):
    """Everything the API serves, one attribute per area."""

    @property
    def system(self) -> SystemBackend:
        """Ping, version and info facts."""

    @property
    def images(self) -> ImageBackend:
        """The image store and its operations."""

    @property
    def containers(self) -> ContainerBackend:
        """Containers, exec instances and networks."""

    @property
    def networks(self) -> NetworkBackend:
        """Networks: the predefined ones and the users'."""

    @property
    def volumes(self) -> VolumeBackend:
        """Named and anonymous volumes."""

    @property
    def events(self) -> EventsBackend:
        """The event bus every change is published on."""

    @property
    def build(self) -> BuildBackend:
        """The classic builder and its cache."""
