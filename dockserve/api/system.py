# -*- test-case-name: tests.api.test_system -*-
"""GET/HEAD /_ping, GET /version, GET /info: placeholder until filled in."""

from typing import Any, Protocol

from dockserve.api.route import Route


class SystemBackend(Protocol):
    """What the system handlers ask of the daemon."""

    def info(self) -> dict[str, Any]:
        """The facts C{GET /info} reports, with the spec's field names."""


class SystemAPI:
    """The system handlers."""

    def __init__(self, backend: SystemBackend) -> None:
        self._backend = backend


ROUTES: list[Route] = []
