# -*- test-case-name: tests.api.test_router -*-
"""
The one route table: every area's routes, served bare and under C{/v<version>}.

Like moby's C{initRoutes}, each area module lists its L{Route}s; this module
puts them all in one Klein map, each path twice (bare, and under a
C{/v{version:[0-9.]+}} prefix whose version the middleware checks), and
wraps the map in L{dockserve.api.middleware.Middleware}.
"""

from collections.abc import Callable
from typing import Any

from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound as NoRoute
from werkzeug.routing import BaseConverter, Map

from klein import Klein
from twisted.web.resource import IResource

from dockserve.api import (
    build,
    commit,
    containers,
    events,
    exec,  # noqa: A004
    images,
    networks,
    system,
    volumes,
)
from dockserve.api import debug as debug_api
from dockserve.api.backend import Backend
from dockserve.api.middleware import Middleware, RequestCounters, endpoint, not_found
from dockserve.api.route import Route

#: Each area: its routes and how to build its handler object from the
#: backend (and the reactor, for areas that keep time).
AREAS: list[tuple[list[Route], Callable[[Backend, Any], object]]] = [
    (system.ROUTES, lambda b, _: system.SystemAPI(b.system)),
    (images.ROUTES, lambda b, _: images.ImagesAPI(b.images)),
    (containers.ROUTES, lambda b, _: containers.ContainersAPI(b.containers)),
    (exec.ROUTES, lambda b, _: exec.ExecAPI(b.containers)),
    (commit.ROUTES, lambda b, _: commit.CommitAPI(b.containers)),
    (networks.ROUTES, lambda b, _: networks.NetworksAPI(b.networks, b.containers)),
    (build.ROUTES, lambda b, _: build.BuildAPI(getattr(b, "build", None))),
    (events.ROUTES, lambda b, r: events.EventsAPI(b.events, r)),
    (volumes.ROUTES, lambda b, _: volumes.VolumesAPI(b.volumes)),
]


class _VersionConverter(BaseConverter):
    """The C{[0-9.]+} of dockerd's C{/v{version}} prefix."""

    regex = r"[0-9.]+"


def make_resource(
    backend: Backend,
    *,
    debug: bool = False,
    cors_origin: str | None = None,
    reactor: Any = None,
) -> IResource:
    """
    The resource that serves the whole API for C{backend}.

    @param debug: C{--debug}: also serve C{/debug/vars} and C{/debug/pprof/*}
        (and start tracing allocations for the heap profile).
    @param cors_origin: C{--api-cors-header}.
    @param reactor: What the debug profile and C{/events} schedule on; the
        global reactor when C{None}.
    """
    app = Klein()
    url_map: Map = app.url_map
    url_map.converters["version"] = _VersionConverter
    counters = RequestCounters()
    tables: list[tuple[list[Route], object]] = [
        (routes, make_area(backend, reactor)) for routes, make_area in AREAS
    ]
    if debug:
        tables.append((debug_api.ROUTES, debug_api.DebugAPI(counters, reactor)))
    for routes, area in tables:
        for route in routes:
            _add(app, route, getattr(area, route.handler))
    app.handle_errors(NoRoute, MethodNotAllowed)(not_found)
    return Middleware(app.resource(), cors_origin=cors_origin, counters=counters)


def _add(app: Klein, route: Route, handler: Callable[..., Any]) -> None:
    for prefix, name in (
        ("", route.handler),
        ("/v<version:version>", f"{route.handler}_v"),
    ):
        app.route(
            prefix + route.path,
            methods=[route.method],
            endpoint=name,
            strict_slashes=False,
        )(endpoint(handler, route.handler))
