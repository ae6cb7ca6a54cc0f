# -*- test-case-name: tests.api.test_exec -*-
"""The /containers/{id}/exec and /exec endpoints: placeholder until filled in."""

from dockserve.api.containers import ContainerBackend
from dockserve.api.route import Route


class ExecAPI:
    """The exec handlers."""

    def __init__(self, backend: ContainerBackend) -> None:
        self._backend = backend


ROUTES: list[Route] = []
