# -*- test-case-name: tests.api.test_volumes -*-
"""
The C{/volumes} endpoints: C{docker volume create/ls/inspect/rm/prune}
(moby's C{volume_routes.go}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from dockserve.api.middleware import api_version
from dockserve.api.params import json_object, query_bool, query_filters
from dockserve.api.route import Route
from dockserve.errors import InvalidParameter

if TYPE_CHECKING:
    from collections.abc import Mapping

    from twisted.internet.defer import Deferred
    from twisted.web.server import Request


class VolumeBackend(Protocol):
    """What the volume handlers ask of the daemon."""

    def create(
        self,
        name: str | None = None,
        *,
        driver: str | None = None,
        driver_opts: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """A new volume, or the existing one of that name."""

    def inspect(self, name: str) -> dict[str, Any]:
        """One volume."""

    def list_volumes(self, filters: Mapping[str, list[str]]) -> dict[str, Any]:
        """C{{"Volumes": [...], "Warnings": ...}}."""

    def remove(self, name: str, *, force: bool = False) -> Deferred[None]:
        """Remove an unused volume."""

    def prune(
        self, filters: Mapping[str, list[str]], *, anonymous_only: bool
    ) -> Deferred[dict[str, Any]]:
        """Remove unused volumes."""


def _strings(body: dict[str, Any], field: str) -> dict[str, str]:
    """A C{map[string]string} field of the body, checked as Go decodes it."""
    value = body.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(v, str) for v in value.values()
    ):
        kind = "object" if isinstance(value, dict) else type(value).__name__
        raise InvalidParameter(
            f"json: cannot unmarshal {kind} into Go struct field "
            f"CreateOptions.{field} of type map[string]string"
        )
    return value


def _version_at_least(request: Request, wanted: tuple[int, int]) -> bool:
    major, _, minor = api_version(request).partition(".")
    try:
        return (int(major), int(minor or 0)) >= wanted
    except ValueError:
        return True


class VolumesAPI:
    """The volume handlers."""

    def __init__(self, backend: VolumeBackend) -> None:
        self._backend = backend

    def volume_list(self, request: Request) -> dict[str, Any]:
        """C{GET /volumes}."""
        return self._backend.list_volumes(query_filters(request))

    def volume_create(self, request: Request) -> dict[str, Any]:
        """C{POST /volumes/create}: 201 and the volume."""
        body = json_object(request)
        name = body.get("Name")
        driver = body.get("Driver")
        for field, value in (("Name", name), ("Driver", driver)):
            if value is not None and not isinstance(value, str):
                raise InvalidParameter(
                    f"json: cannot unmarshal {type(value).__name__} into Go struct "
                    f"field CreateOptions.{field} of type string"
                )
        created = self._backend.create(
            name or None,
            driver=driver or None,
            driver_opts=_strings(body, "DriverOpts"),
            labels=_strings(body, "Labels"),
        )
        request.setResponseCode(201)
        return created

    def volume_inspect(self, request: Request, name: str) -> dict[str, Any]:
        """C{GET /volumes/{name}}."""
        del request
        return self._backend.inspect(name)

    async def volume_remove(self, request: Request, name: str) -> bytes:
        """C{DELETE /volumes/{name}?force=}: 204."""
        await self._backend.remove(name, force=query_bool(request, "force"))
        request.setResponseCode(204)
        return b""

    def volume_prune(self, request: Request) -> Deferred[dict[str, Any]]:
        """
        C{POST /volumes/prune}: from API 1.42 only anonymous volumes unless
        C{all=true}, as dockerd.
        """
        return self._backend.prune(
            query_filters(request), anonymous_only=_version_at_least(request, (1, 42))
        )


ROUTES: list[Route] = [
    Route("GET", "/volumes", "volume_list"),
    Route("POST", "/volumes/create", "volume_create"),
    Route("POST", "/volumes/prune", "volume_prune"),
    Route("GET", "/volumes/<name>", "volume_inspect"),
    Route("DELETE", "/volumes/<name>", "volume_remove"),
]
