# -*- test-case-name: tests.api.test_system -*-
"""
C{GET}/C{HEAD /_ping}, C{GET /version}, C{GET /info}: what clients
negotiate from.

The docker CLI sends C{HEAD /_ping} and reads C{Api-Version}; the Docker
SDK for Python reads C{ApiVersion} from C{GET /version}. The facts
themselves come from the backend (L{dockserve.daemon.system.SystemService}).
"""

from typing import TYPE_CHECKING, Any, Protocol

from twisted.web.server import Request

from dockserve.api.params import query_all
from dockserve.api.route import Route

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred


class SystemBackend(Protocol):
    """What the system handlers ask of the daemon."""

    def info(self) -> dict[str, Any]:
        """The facts C{GET /info} reports, with the spec's field names."""

    def version(self) -> dict[str, Any]:
        """The body of C{GET /version}, with the spec's field names."""

    def disk_usage(self, types: list[str]) -> "Deferred[dict[str, Any]]":
        """
        The body of C{GET /system/df}, only the parts in C{types}
        (C{container}, C{image}, C{volume}, C{build-cache}) when it names
        any.
        """


class SystemAPI:
    """The system handlers."""

    def __init__(self, backend: SystemBackend) -> None:
        self._backend = backend

    def ping(self, request: Request) -> bytes:
        """
        C{GET}/C{HEAD /_ping}: C{OK}, never cached, with the headers the CLI
        reads before its first real call (Twisted drops the body for HEAD).
        """
        set_header = request.responseHeaders.setRawHeaders
        set_header(b"Content-Type", [b"text/plain; charset=utf-8"])
        set_header(b"Builder-Version", [b"1"])
        set_header(b"Swarm", [b"inactive"])
        set_header(b"Cache-Control", [b"no-cache, no-store, must-revalidate"])
        set_header(b"Pragma", [b"no-cache"])
        return b"OK"

    def version(self, request: Request) -> dict[str, Any]:
        """C{GET /version}: the daemon's and its components' versions."""
        del request
        return self._backend.version()

    def info(self, request: Request) -> dict[str, Any]:
        """C{GET /info}: system-wide facts (the spec's C{SystemInfo})."""
        del request
        return self._backend.info()

    def system_df(self, request: Request) -> "Deferred[dict[str, Any]]":
        """C{GET /system/df?type=}: what the daemon's objects take on disk."""
        return self._backend.disk_usage(query_all(request, "type"))


ROUTES: list[Route] = [
    Route("GET", "/_ping", "ping"),
    Route("GET", "/version", "version"),
    Route("GET", "/info", "info"),
    Route("GET", "/system/df", "system_df"),
]
