"""Tests for L{dockserve.api.events}: C{GET /events} as a client reads it."""

import json
from typing import Any
from urllib.parse import quote

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from dockserve.api.router import make_resource
from dockserve.daemon.events import EventBus
from dockserve.testing.backend import MemoryBackend

#: 2025-12-06T05:46:40Z, in the test's clock.
T0 = 1_765_000_000


class EventsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.bus = EventBus(now_ns=lambda: int(self.clock.seconds() * 1e9))
        resource = make_resource(MemoryBackend(events=self.bus), reactor=self.clock)
        self.site = Site(resource, reactor=self.clock)  # type: ignore[no-untyped-call]

    def get(self, query: str = "") -> tuple[Any, StringTransport]:
        channel = self.site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, Failure(ConnectionDone()))
        channel.dataReceived(
            f"GET /v1.50/events{query} HTTP/1.1\r\nHost: d\r\n\r\n".encode()
        )
        return channel, transport

    def lines(self, transport: StringTransport) -> list[dict[str, Any]]:
        """The JSON objects of the (chunked) body so far."""
        raw = transport.value().split(b"\r\n\r\n", 1)[1]
        body = b""
        while raw:
            size, _, rest = raw.partition(b"\r\n")
            length = int(size, 16)
            body, raw = body + rest[:length], rest[length + 2 :]
        return [json.loads(line) for line in body.splitlines() if line]

    def test_headers_first_then_live(self) -> None:
        """
        The status and headers go at once; each event follows as it
        happens, one JSON object per line, filters applied.
        """
        _, transport = self.get(
            "?filters=" + quote(json.dumps({"type": ["container"]}))
        )
        head = transport.value()
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK"))
        self.assertIn(b"Content-Type: application/json", head)
        self.bus.publish("container", "start", "c1", {"name": "web", "image": "bb"})
        self.bus.publish("image", "pull", "busybox:latest")
        [event] = self.lines(transport)
        self.assertEqual((event["Type"], event["Action"], event["id"]),
                         ("container", "start", "c1"))  # fmt: skip
        self.assertEqual(event["Actor"]["Attributes"]["name"], "web")

    def test_since_until_past_is_finite(self) -> None:
        """A window in the past is a replay that ends."""
        self.bus.publish("container", "create", "c1")
        self.clock.advance(10)
        self.bus.publish("container", "start", "c1")
        self.clock.advance(10)
        self.bus.publish("container", "die", "c1")
        self.clock.advance(10)
        _, transport = self.get(f"?since={T0 + 5}&until={T0 + 15}")
        self.assertEqual([e["Action"] for e in self.lines(transport)], ["start"])
        self.assertTrue(transport.value().endswith(b"0\r\n\r\n"))

    def test_since_then_live_until(self) -> None:
        """since replays, then it streams live, and ends at until."""
        self.bus.publish("container", "create", "c1")
        _, transport = self.get(f"?since={T0}&until={T0 + 5}")
        self.bus.publish("container", "start", "c1")
        self.assertFalse(transport.value().endswith(b"0\r\n\r\n"))
        self.clock.advance(5)
        self.assertEqual([e["Action"] for e in self.lines(transport)],
                         ["create", "start"])  # fmt: skip
        self.assertTrue(transport.value().endswith(b"0\r\n\r\n"))
        self.assertEqual(self.bus.subscribers, 0)

    def test_client_goes(self) -> None:
        """A client that disconnects is unsubscribed."""
        channel, _ = self.get()
        self.assertEqual(self.bus.subscribers, 1)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.bus.subscribers, 0)

    def test_slow_client(self) -> None:
        """
        A client whose transport pauses the stream has events queued, then
        delivered in order when it resumes.
        """
        channel, transport = self.get()
        transport.producer.pauseProducing()
        self.bus.publish("container", "a", "c")
        self.bus.publish("container", "b", "c")
        self.assertEqual(self.lines(transport), [])
        transport.producer.resumeProducing()
        self.assertEqual([e["Action"] for e in self.lines(transport)], ["a", "b"])
        del channel

    def test_bad_input(self) -> None:
        """dockerd's 400s: since after until, a bad time, an unknown filter."""
        for query, message in [
            (f"?since={T0 + 10}&until={T0}",
             f"`since` time ({T0 + 10}) cannot be after `until` time ({T0})"),
            ("?since=yesterday",
             ('invalid value for "since": failed to parse value as time or '
              'duration: "yesterday"')),
            ("?filters=" + quote(json.dumps({"colour": ["red"]})),
             "invalid filter 'colour'"),
        ]:  # fmt: skip
            _, transport = self.get(query)
            head, _, body = transport.value().partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 400"), query)
            self.assertEqual(json.loads(body), {"message": message})
        self.assertEqual(self.bus.subscribers, 0)
