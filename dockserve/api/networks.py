# -*- test-case-name: tests.api.test_networks -*-
"""The /networks endpoints: placeholder until filled in."""

from dockserve.api.containers import ContainerBackend
from dockserve.api.route import Route


class NetworksAPI:
    """The network handlers."""

    def __init__(self, backend: ContainerBackend) -> None:
        self._backend = backend


ROUTES: list[Route] = []
