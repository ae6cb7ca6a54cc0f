# -*- test-case-name: tests.api.test_networks -*-
"""
The C{/networks} endpoints: the predefined networks, listed and inspected.

Only C{bridge}, C{host} and C{none} exist until bridge networking has its
own issue; creating, removing, connecting and disconnecting answer as
dockerd does for the predefined ones, or 404 for any other name.
"""

from typing import Any

from twisted.web.server import Request

from dockserve.api.containers import ContainerBackend
from dockserve.api.params import query_filters
from dockserve.api.route import Route
from dockserve.errors import Forbidden, NotImplementedByDaemon


class NetworksAPI:
    """The network handlers."""

    def __init__(self, backend: ContainerBackend) -> None:
        self._backend = backend

    def network_list_networks(self, request: Request) -> list[dict[str, Any]]:
        """C{GET /networks}."""
        return self._backend.list_networks(query_filters(request))

    def network_inspect(self, request: Request, name: str) -> dict[str, Any]:
        """C{GET /networks/{id}}."""
        del request
        return self._backend.inspect_network(name)

    def network_remove(self, request: Request, name: str) -> bytes:
        """C{DELETE /networks/{id}}: the predefined ones cannot be removed."""
        del request
        found = self._backend.inspect_network(name)
        raise Forbidden(
            f"{found['Name']} is a pre-defined network and cannot be removed"
        )

    def network_create(self, request: Request) -> bytes:
        """C{POST /networks/create}: not until bridge networking lands."""
        del request
        raise NotImplementedByDaemon(
            "creating networks is not supported by this daemon yet"
        )

    def network_connect(self, request: Request, name: str) -> bytes:
        """C{POST /networks/{id}/connect}."""
        del request
        self._backend.inspect_network(name)
        raise NotImplementedByDaemon(
            "connecting containers to networks is not supported by this daemon yet"
        )

    def network_disconnect(self, request: Request, name: str) -> bytes:
        """C{POST /networks/{id}/disconnect}."""
        del request
        self._backend.inspect_network(name)
        raise NotImplementedByDaemon(
            "disconnecting containers from networks is not supported by this daemon yet"
        )

    def network_prune(self, request: Request) -> dict[str, Any]:
        """C{POST /networks/prune}: nothing to prune."""
        query_filters(request)
        return {"NetworksDeleted": None}


ROUTES: list[Route] = [
    Route("GET", "/networks", "network_list_networks"),
    Route("POST", "/networks/create", "network_create"),
    Route("POST", "/networks/prune", "network_prune"),
    Route("GET", "/networks/<name>", "network_inspect"),
    Route("DELETE", "/networks/<name>", "network_remove"),
    Route("POST", "/networks/<name>/connect", "network_connect"),
    Route("POST", "/networks/<name>/disconnect", "network_disconnect"),
]
