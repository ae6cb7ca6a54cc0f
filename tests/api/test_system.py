# -*- test-case-name: tests.api.test_system -*-
"""Tests for L{dockserve.api.system}: what clients negotiate from."""

import json

from twisted.trial.unittest import SynchronousTestCase

from dockserve.api.router import make_resource
from dockserve.testing.backend import MemoryBackend
from dockserve.testing.system import MemorySystem
from tests.api.test_router import fetch, system_resource


class PingTests(SynchronousTestCase):
    """C{GET} and C{HEAD /_ping}."""

    def test_get(self) -> None:
        """C{OK}, never cached, with the builder and API version headers."""
        code, headers, body = fetch(self, system_resource(), "GET", "/_ping")
        self.assertEqual((code, body), (200, b"OK"))
        self.assertEqual(headers[b"Api-Version"], [b"1.50"])
        self.assertEqual(headers[b"Builder-Version"], [b"1"])
        self.assertEqual(
            headers[b"Cache-Control"], [b"no-cache, no-store, must-revalidate"]
        )
        self.assertEqual(headers[b"Pragma"], [b"no-cache"])

    def test_head(self) -> None:
        """The CLI's C{HEAD /_ping}: the same headers, no body."""
        code, headers, body = fetch(self, system_resource(), "HEAD", "/v1.50/_ping")
        self.assertEqual((code, body), (200, b""))
        self.assertEqual(headers[b"Api-Version"], [b"1.50"])
        self.assertEqual(headers[b"Builder-Version"], [b"1"])


class VersionTests(SynchronousTestCase):
    """C{GET /version}."""

    def test_body(self) -> None:
        """The backend's facts as JSON: the SDK reads C{ApiVersion}."""
        system = MemorySystem()
        code, headers, body = fetch(
            self, make_resource(MemoryBackend(system=system)), "GET", "/version"
        )
        self.assertEqual(code, 200)
        self.assertEqual(headers[b"Content-Type"], [b"application/json"])
        self.assertEqual(json.loads(body), system.version_facts)
        self.assertEqual(json.loads(body)["ApiVersion"], "1.50")


class InfoTests(SynchronousTestCase):
    """C{GET /info}."""

    def test_body(self) -> None:
        """The backend's facts, as the backend gives them."""
        system = MemorySystem(Containers=3, Name="box")
        code, _, body = fetch(
            self, make_resource(MemoryBackend(system=system)), "GET", "/v1.44/info"
        )
        info = json.loads(body)
        self.assertEqual((code, info["Containers"], info["Name"]), (200, 3, "box"))
