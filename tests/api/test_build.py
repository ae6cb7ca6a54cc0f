# -*- test-case-name: tests.api.test_build -*-
"""Tests for L{dockserve.api.build}."""

import json
from typing import Any

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from dockserve.api.router import make_resource
from dockserve.testing.backend import MemoryBackend


class BuildPruneTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.stub = StubTreq(make_resource(MemoryBackend()))

    def post(self, path: str) -> tuple[int, Any]:
        response = self.successResultOf(
            self.stub.request("POST", "http://localhost/v1.50" + path)
        )
        return response.code, json.loads(self.successResultOf(response.content()))

    def test_nothing_to_prune(self) -> None:
        """There is no build cache: nothing deleted, nothing reclaimed."""
        self.assertEqual(
            self.post("/build/prune?all=1&filters=%7B%7D"),
            (200, {"CachesDeleted": [], "SpaceReclaimed": 0}),
        )

    def test_bad_filters(self) -> None:
        """Filters that are not JSON are a 400, as for every prune."""
        code, body = self.post("/build/prune?filters=nope")
        self.assertEqual(code, 400)
        self.assertIn("message", body)


class BuildRefusalTests(SynchronousTestCase):
    """What C{POST /build} refuses before it reads anything."""

    def setUp(self) -> None:
        self.stub = StubTreq(make_resource(MemoryBackend()))

    def post(self, path: str) -> tuple[int, Any]:
        response = self.successResultOf(
            self.stub.request("POST", "http://localhost/v1.50" + path, data=b"")
        )
        return response.code, json.loads(self.successResultOf(response.content()))

    def test_buildkit(self) -> None:
        """version=2 (BuildKit) is a clear 400."""
        code, body = self.post("/build?version=2")
        self.assertEqual(code, 400)
        self.assertIn("BuildKit", body["message"])
        self.assertIn("DOCKER_BUILDKIT=0", body["message"])

    def test_squash(self) -> None:
        """squash needs experimental mode, as dockerd says."""
        self.assertEqual(
            self.post("/build?squash=1"),
            (400, {"message": "squash is only supported with experimental mode"}),
        )

    def test_no_builder(self) -> None:
        """A backend without a builder answers 501."""
        code, _ = self.post("/build?version=1")
        self.assertEqual(code, 501)
