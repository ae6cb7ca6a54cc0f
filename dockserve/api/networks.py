# -*- test-case-name: tests.api.test_networks -*-
"""
The C{/networks} endpoints: C{docker network create/ls/inspect/rm/prune}
and C{connect}/C{disconnect} (moby's C{network_routes.go}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from dockserve.api.params import json_object, query_filters
from dockserve.api.route import Route
from dockserve.errors import InvalidParameter

if TYPE_CHECKING:
    from collections.abc import Mapping

    from twisted.internet.defer import Deferred
    from twisted.web.server import Request


class NetworkBackend(Protocol):
    """What the network handlers ask of the daemon."""

    def list_networks(self, filters: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        """Every network that passes C{filters}."""

    def inspect(self, reference: str) -> dict[str, Any]:
        """One network, with its running members."""

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A new network: C{{"Id", "Warning"}}."""

    def remove(self, reference: str) -> Deferred[None]:
        """Remove an unused, user-defined network."""

    async def prune(self, filters: Mapping[str, list[str]]) -> dict[str, Any]:
        """Remove every unused, user-defined network."""


class ConnectBackend(Protocol):
    """What connect and disconnect ask of the containers."""

    async def connect(
        self, network: str, container: str, config: dict[str, Any] | None
    ) -> None:
        """Put a container on a network."""

    async def disconnect(self, network: str, container: str, force: bool) -> None:
        """Take a container off a network."""


def _container(body: dict[str, Any]) -> str:
    container = body.get("Container")
    if not isinstance(container, str) or not container:
        raise InvalidParameter("container is required")
    return container


class NetworksAPI:
    """The network handlers."""

    def __init__(self, networks: NetworkBackend, containers: ConnectBackend) -> None:
        self._networks = networks
        self._containers = containers

    def network_list_networks(self, request: Request) -> list[dict[str, Any]]:
        """C{GET /networks}."""
        return self._networks.list_networks(query_filters(request))

    def network_inspect(self, request: Request, name: str) -> dict[str, Any]:
        """C{GET /networks/{id}}."""
        del request
        return self._networks.inspect(name)

    def network_create(self, request: Request) -> dict[str, Any]:
        """C{POST /networks/create}: 201 C{{"Id", "Warning"}}."""
        created = self._networks.create(json_object(request, required=True))
        request.setResponseCode(201)
        return created

    async def network_remove(self, request: Request, name: str) -> bytes:
        """C{DELETE /networks/{id}}: 204."""
        await self._networks.remove(name)
        request.setResponseCode(204)
        return b""

    async def network_prune(self, request: Request) -> dict[str, Any]:
        """C{POST /networks/prune}."""
        return await self._networks.prune(query_filters(request))

    async def network_connect(self, request: Request, name: str) -> bytes:
        """C{POST /networks/{id}/connect}: C{{"Container", "EndpointConfig"}}."""
        body = json_object(request, required=True)
        config = body.get("EndpointConfig")
        await self._containers.connect(
            name, _container(body), config if isinstance(config, dict) else None
        )
        return b""

    async def network_disconnect(self, request: Request, name: str) -> bytes:
        """C{POST /networks/{id}/disconnect}: C{{"Container", "Force"}}."""
        body = json_object(request, required=True)
        await self._containers.disconnect(
            name, _container(body), bool(body.get("Force"))
        )
        return b""


ROUTES: list[Route] = [
    Route("GET", "/networks", "network_list_networks"),
    Route("POST", "/networks/create", "network_create"),
    Route("POST", "/networks/prune", "network_prune"),
    Route("GET", "/networks/<name>", "network_inspect"),
    Route("DELETE", "/networks/<name>", "network_remove"),
    Route("POST", "/networks/<name>/connect", "network_connect"),
    Route("POST", "/networks/<name>/disconnect", "network_disconnect"),
]
