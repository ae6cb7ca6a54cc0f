# -*- test-case-name: tests.api.test_debug -*-
"""Tests for L{dockserve.api.debug}: the profiles under C{--debug}."""

import json
import pstats
import tracemalloc
from pathlib import Path

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dockserve.api.router import make_resource
from dockserve.testing.backend import MemoryBackend
from dockserve.testing.system import MemorySystem
from tests.api.test_router import fetch


class DebugTests(SynchronousTestCase):
    """The debug routes with C{debug=True} on a fake clock."""

    def setUp(self) -> None:
        if not tracemalloc.is_tracing():
            # Tracing slows everything: leave it off for the other tests.
            self.addCleanup(tracemalloc.stop)
        self.clock = Clock()
        self.resource = make_resource(
            MemoryBackend(system=MemorySystem()), debug=True, reactor=self.clock
        )

    def test_vars(self) -> None:
        """Counters as JSON, with requests served by route and status."""
        fetch(self, self.resource, "GET", "/_ping")
        fetch(self, self.resource, "GET", "/v1.99/_ping")
        code, headers, body = fetch(self, self.resource, "GET", "/debug/vars")
        self.assertEqual((code, headers[b"Content-Type"]), (200, [b"application/json"]))
        found = json.loads(body)
        self.assertEqual(found["requests"]["ping"], {"200": 1, "400": 1})
        self.assertGreater(found["memstats"]["rss_bytes"], 0)
        self.assertEqual(len(found["memstats"]["gc_counts"]), 3)
        self.assertIn("open", found["connections"])
        self.assertIsInstance(found["cmdline"], list)

    def test_index(self) -> None:
        """The index links every profile."""
        code, _, body = fetch(self, self.resource, "GET", "/debug/pprof/")
        self.assertEqual(code, 200)
        for name in (b"goroutine", b"heap", b"profile", b"/debug/vars"):
            self.assertIn(name, body)

    def test_profile(self) -> None:
        """
        The profile answers after N seconds of the clock, not before, with
        a dump C{pstats} reads.
        """
        stub = StubTreq(self.resource)
        pending = stub.get("http://localhost/debug/pprof/profile?seconds=2")
        self.assertNoResult(pending)
        self.clock.advance(1)
        self.assertNoResult(pending)
        self.clock.advance(1)
        stub.flush()
        response = self.successResultOf(pending)
        self.assertEqual(
            response.headers.getRawHeaders("Content-Type"), ["application/octet-stream"]
        )
        dump = Path(self.mktemp())
        dump.write_bytes(self.successResultOf(response.content()))
        # What ran on this thread while profiling: the clock advancing.
        functions = [name for _, _, name in pstats.Stats(str(dump)).stats]  # type: ignore[attr-defined]
        self.assertIn("advance", functions)

    def test_one_profile_at_a_time(self) -> None:
        """A second profile while one runs is a 409."""
        stub = StubTreq(self.resource)
        pending = stub.get("http://localhost/debug/pprof/profile?seconds=5")
        code, _, body = fetch(
            self, self.resource, "GET", "/debug/pprof/profile?seconds=1"
        )
        self.assertEqual(code, 409)
        self.assertIn("profile", json.loads(body)["message"])
        self.clock.advance(5)
        stub.flush()
        self.assertEqual(self.successResultOf(pending).code, 200)

    def test_profile_bad_seconds(self) -> None:
        """Zero or non-numeric seconds are a 400."""
        for value in ("0", "x", "-3"):
            code, _, _ = fetch(
                self, self.resource, "GET", f"/debug/pprof/profile?seconds={value}"
            )
            self.assertEqual(code, 400, value)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_heap(self) -> None:
        """Top allocation sites from tracemalloc, as text."""
        code, headers, body = fetch(self, self.resource, "GET", "/debug/pprof/heap")
        self.assertEqual(code, 200)
        self.assertTrue(headers[b"Content-Type"][0].startswith(b"text/plain"))
        self.assertIn(b"# tracemalloc:", body)
        self.assertIn(b".py:", body)

    def test_goroutine(self) -> None:
        """Every thread's stack and the reactor's delayed calls."""
        self.clock.callLater(7, lambda: None)
        code, _, body = fetch(self, self.resource, "GET", "/debug/pprof/goroutine")
        text = body.decode()
        self.assertEqual(code, 200)
        self.assertIn("[MainThread]", text)
        self.assertIn("test_goroutine", text)
        self.assertIn("reactor delayed calls: 1", text)
        self.assertIn("in 7.000s", text)
