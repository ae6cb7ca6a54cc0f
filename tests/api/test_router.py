# -*- test-case-name: tests.api.test_router -*-
"""Tests for L{dockserve.api.router}: one table, bare and versioned paths, 404s."""

import json
import tracemalloc
from typing import Any

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import IResource
from zope.interface.verify import verifyObject

from dockserve.api import router
from dockserve.api.route import Route
from dockserve.api.router import make_resource
from dockserve.testing.backend import MemoryBackend
from dockserve.testing.system import MemorySystem


def fetch(
    case: SynchronousTestCase,
    resource: IResource,
    method: str,
    path: str,
    **kwargs: Any,
) -> tuple[int, dict[bytes, list[bytes]], bytes]:
    """
    C{method path} through C{resource}: the status, the headers and the
    body a client would see.
    """
    stub = StubTreq(resource)
    response = case.successResultOf(
        stub.request(method, "http://localhost" + path, **kwargs)
    )
    body = case.successResultOf(response.content())
    headers = dict(response.headers.getAllRawHeaders())
    return response.code, headers, body


def system_resource(**kwargs: Any) -> IResource:
    """The API over a L{MemorySystem}."""
    return make_resource(MemoryBackend(system=MemorySystem()), **kwargs)


class VersionPrefixTests(SynchronousTestCase):
    """Every route answers bare and under C{/v<version>}."""

    def test_bare_and_versioned(self) -> None:
        """C{/version} and C{/v1.41/version} answer the same body."""
        resource = system_resource()
        bare = fetch(self, resource, "GET", "/version")
        versioned = fetch(self, resource, "GET", "/v1.41/version")
        self.assertEqual((bare[0], versioned[0]), (200, 200))
        self.assertEqual(json.loads(bare[2]), json.loads(versioned[2]))

    def test_too_new(self) -> None:
        """A version above 1.50 is a 400 with dockerd's message."""
        code, _, body = fetch(self, system_resource(), "GET", "/v1.51/_ping")
        self.assertEqual(
            (code, json.loads(body)),
            (
                400,
                {
                    "message": "client version 1.51 is too new. "
                    "Maximum supported API version is 1.50"
                },
            ),
        )

    def test_too_old(self) -> None:
        """A version below 1.24 is a 400 with dockerd's message."""
        code, _, body = fetch(self, system_resource(), "GET", "/v1.23/info")
        self.assertEqual(code, 400)
        self.assertEqual(
            json.loads(body)["message"],
            "client version 1.23 is too old. Minimum supported API version is "
            "1.24, please upgrade your client to a newer version",
        )

    def test_version_compared_as_numbers(self) -> None:
        """C{1.100} is newer than C{1.50}, C{1.9} older than C{1.24}."""
        resource = system_resource()
        self.assertEqual(fetch(self, resource, "GET", "/v1.100/_ping")[0], 400)
        self.assertEqual(fetch(self, resource, "GET", "/v1.9/_ping")[0], 400)
        self.assertEqual(fetch(self, resource, "GET", "/v1.24/_ping")[0], 200)

    def test_not_a_version(self) -> None:
        """A prefix that is not C{v[0-9.]+} is no route at all."""
        code, _, body = fetch(self, system_resource(), "GET", "/vlatest/_ping")
        self.assertEqual((code, body), (404, b'{"message": "page not found"}\n'))


class NotFoundTests(SynchronousTestCase):
    """Unknown paths and methods are 404 C{page not found}, as JSON."""

    def test_unknown_path(self) -> None:
        """A path no route serves."""
        code, headers, body = fetch(self, system_resource(), "GET", "/nothing/here")
        self.assertEqual(code, 404)
        self.assertEqual(headers[b"Content-Type"], [b"application/json"])
        self.assertEqual(json.loads(body), {"message": "page not found"})

    def test_wrong_method(self) -> None:
        """A served path with a method it lacks is 404, not 405."""
        code, _, body = fetch(self, system_resource(), "DELETE", "/v1.50/info")
        self.assertEqual((code, json.loads(body)), (404, {"message": "page not found"}))

    def test_debug_off(self) -> None:
        """Without C{debug} the debug routes do not exist."""
        code, _, _ = fetch(self, system_resource(), "GET", "/debug/vars")
        self.assertEqual(code, 404)


class TableTests(SynchronousTestCase):
    """The table itself."""

    def test_unique_endpoints(self) -> None:
        """
        No two routes share a method and path, or a handler name (Klein keys
        endpoints by name, so a clash would silently drop a route).
        """
        seen: set[tuple[str, str]] = set()
        names: set[str] = set()
        for routes, _ in router.AREAS:
            for route in routes:
                self.assertIsInstance(route, Route)
                self.assertNotIn((route.method, route.path), seen)
                self.assertNotIn(route.handler, names)
                seen.add((route.method, route.path))
                names.add(route.handler)

    def test_resource(self) -> None:
        """What L{make_resource} returns is an L{IResource}, for any Site."""
        if not tracemalloc.is_tracing():
            # debug=True starts tracing allocations: stop it after.
            self.addCleanup(tracemalloc.stop)
        self.assertTrue(verifyObject(IResource, system_resource(debug=True)))
