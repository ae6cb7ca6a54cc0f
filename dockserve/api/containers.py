# -*- test-case-name: tests.api.test_containers -*-
"""The /containers endpoints: placeholder until filled in."""

from typing import Protocol

from dockserve.api.route import Route


class ContainerBackend(Protocol):
    """What the /containers handlers ask of the daemon."""


class ContainersAPI:
    """The /containers handlers."""

    def __init__(self, backend: ContainerBackend) -> None:
        self._backend = backend


ROUTES: list[Route] = []
