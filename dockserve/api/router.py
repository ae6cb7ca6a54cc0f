# -*- test-case-name: tests.api.test_router -*-
"""
The one route table: every area's routes, served bare and under C{/v<version>}.

Placeholder: the full middleware (headers, versions, errors, CORS, log
lines) lands in L{dockserve.api.middleware}.
"""

import json
from collections.abc import Callable
from typing import Any

from klein import Klein
from twisted.web.resource import IResource
from twisted.web.server import Request

from dockserve.api import containers, exec, images, networks, system  # noqa: A004
from dockserve.api.backend import Backend
from dockserve.api.route import Route

#: Each area: its routes and how to build its handler object from the backend.
AREAS: list[tuple[list[Route], Callable[[Backend], object]]] = [
    (system.ROUTES, lambda b: system.SystemAPI(b.system)),
    (images.ROUTES, lambda b: images.ImagesAPI(b.images)),
    (containers.ROUTES, lambda b: containers.ContainersAPI(b.containers)),
    (exec.ROUTES, lambda b: exec.ExecAPI(b.containers)),
    (networks.ROUTES, lambda b: networks.NetworksAPI(b.containers)),
]


def make_resource(
    backend: Backend, *, debug: bool = False, cors_origin: str | None = None
) -> IResource:
    """The Klein resource that serves the whole API for C{backend}."""
    del debug, cors_origin
    app = Klein()
    for routes, make_area in AREAS:
        area = make_area(backend)
        for route in routes:
            handler = getattr(area, route.handler)
            for prefix in ("", "/v<version>"):
                app.route(
                    prefix + route.path,
                    methods=[route.method],
                    endpoint=f"{route.handler}{prefix}",
                )(_wrap(handler))
    return app.resource()


def _wrap(handler: Callable[..., Any]) -> Callable[..., Any]:
    def call(request: Request, version: str | None = None, **kwargs: Any) -> Any:
        del version
        result = handler(request, **kwargs)
        if isinstance(result, dict | list):
            request.responseHeaders.setRawHeaders(
                b"Content-Type", [b"application/json"]
            )
            return json.dumps(result).encode()
        return result

    return call
