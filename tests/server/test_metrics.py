"""
Tests for L{dockserve.server.metrics}: C{--metrics-addr} parsing, what is
counted per request and per policy decision, what is read from the daemon
at scrape time (in memory, with the real event bus and listen buffer), and
a real scrape of C{/metrics} on loopback through C{prometheus_client}'s
Twisted resource.
"""

import threading
import urllib.request
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from twisted.internet import reactor
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.internet.threads import deferToThread
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dockserve.daemon.events import EventBus
from dockserve.server.listenbuffer import ListenBufferEndpoint
from dockserve.server.listeners import ListenerService
from dockserve.server.metrics import DaemonMetrics, InvalidAddress, parse_address
from dockserve.server.metrics.requests import RequestMetrics
from dockserve.server.metrics.state import StateCollector
from tests.api.policy.rig import Rig
from tests.api.policy.test_door import ALICE, POLICY
from tests.api.test_middleware import raising, wrap
from tests.api.test_router import fetch


def sample(metrics: DaemonMetrics, name: str, **labels: str) -> float | None:
    """A sample's value as a scrape would show it (after a refresh)."""
    metrics.state.refresh()
    return metrics.registry.get_sample_value(name, labels)


class AddressTests(SynchronousTestCase):
    """C{--metrics-addr} is HOST:PORT, as dockerd's (Go's SplitHostPort)."""

    def test_forms(self) -> None:
        """IPv4, IPv6 in brackets and a name (resolved once) are taken."""
        v4 = parse_address("127.0.0.1:9323")
        self.assertEqual((v4.interface, v4.port, v4.v6), ("127.0.0.1", 9323, False))
        self.assertTrue(v4.loopback)
        v6 = parse_address("[::1]:0")
        self.assertEqual((v6.interface, v6.port, v6.v6), ("::1", 0, True))
        self.assertEqual(parse_address("localhost:9323").interface, "127.0.0.1")
        every = parse_address("0.0.0.0:9323")
        self.assertFalse(every.loopback)
        named = parse_address(
            "metrics.example:1", resolve=lambda _: ("10.1.2.3", False)
        )
        self.assertEqual(named.interface, "10.1.2.3")

    def test_refused(self) -> None:
        """Each bad form says what is wrong, and what to write instead."""
        for text, fragment in [
            ("9323", "missing port"),
            (":9323", "no host"),
            ("127.0.0.1:", "invalid port"),
            ("127.0.0.1:65536", "invalid port"),
            ("127.0.0.1:x", "invalid port"),
            ("::1:9323", "brackets"),
        ]:
            with self.assertRaises(InvalidAddress, msg=text) as caught:
                parse_address(text)
            self.assertIn(fragment, str(caught.exception))
            self.assertIn(repr(text), str(caught.exception))

    def test_unresolvable(self) -> None:
        """A name that does not resolve is named."""

        def fail(host: str) -> tuple[str, bool]:
            raise OSError(-2, f"Name or service not known: {host}")

        with self.assertRaises(InvalidAddress) as caught:
            parse_address("nowhere.invalid:9323", resolve=fail)
        self.assertIn("cannot resolve 'nowhere.invalid'", str(caught.exception))


class FakeRequest:
    """
    What the observer reads of a request: the address it came in at, and
    the listener its site names (each -H has a site of its own).
    """

    def __init__(self, host: object, listener: str | None = None) -> None:
        self._host = host
        if listener is not None:
            self.channel = SimpleNamespace(site=SimpleNamespace(listener=listener))

    def getHost(self) -> object:
        return self._host


class RequestMetricsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.metrics = DaemonMetrics()

    def test_counted_by_route_status_listener(self) -> None:
        """
        Each request is counted once under its route, status and listener
        (its -H, as its site names it), and its duration lands in the
        route's histogram.
        """
        request = FakeRequest(UNIXAddress(b"/run/d.sock"), "unix:///run/d.sock")
        self.metrics.observe_request(request, "ping", 200, 0.0004)
        self.metrics.observe_request(request, "ping", 200, 0.002)
        self.metrics.observe_request(request, "container_inspect", 404, 0.02)
        labels = {"principal": "unix:///run/d.sock"}
        self.assertEqual(
            sample(
                self.metrics,
                "dockserve_http_requests_total",
                route="ping",
                status="200",
                **labels,
            ),
            2.0,
        )
        self.assertEqual(
            sample(
                self.metrics,
                "dockserve_http_requests_total",
                route="container_inspect",
                status="404",
                **labels,
            ),
            1.0,
        )
        bucket = "dockserve_http_request_duration_seconds_bucket"
        self.assertEqual(sample(self.metrics, bucket, route="ping", le="0.0005"), 1.0)
        self.assertEqual(sample(self.metrics, bucket, route="ping", le="0.0025"), 2.0)
        self.assertEqual(
            sample(
                self.metrics,
                "dockserve_http_request_duration_seconds_count",
                route="container_inspect",
            ),
            1.0,
        )

    def test_listener_as_given(self) -> None:
        """
        A listener on 0.0.0.0 is named by its -H, not by the address the
        client reached (127.0.0.1).
        """
        request = FakeRequest(
            IPv4Address("TCP", "127.0.0.1", 2376), "tcp://0.0.0.0:2376"
        )
        self.metrics.observe_request(request, "ping", 200, 0.001)
        self.assertEqual(
            sample(
                self.metrics,
                "dockserve_http_requests_total",
                route="ping",
                status="200",
                principal="tcp://0.0.0.0:2376",
            ),
            1.0,
        )

    def test_unknown_port_named_by_address(self) -> None:
        """A request whose site names no listener shows the address it reached."""
        request = FakeRequest(IPv4Address("TCP", "127.0.0.1", 9))
        self.metrics.observe_request(request, "ping", 200, 0.001)
        self.assertEqual(
            sample(
                self.metrics,
                "dockserve_http_requests_total",
                route="ping",
                status="200",
                principal="tcp://127.0.0.1:9",
            ),
            1.0,
        )

    def test_principal_from_policy(self) -> None:
        """Once a policy names the principal, that name is the label."""
        metrics = DaemonMetrics(principal_of=lambda _: "alice")
        metrics.observe_request(FakeRequest(UNIXAddress(b"/s")), "ping", 200, 0.001)
        self.assertEqual(
            sample(
                metrics,
                "dockserve_http_requests_total",
                route="ping",
                status="200",
                principal="alice",
            ),
            1.0,
        )

    def test_decisions(self) -> None:
        """
        count_decision (the front door's observer) counts each decision by
        verdict, route, rule and principal; no rule (no policy file) is -.
        """
        self.metrics.count_decision("ci", "containers.create", "deny", "no-priv")
        self.metrics.count_decision("ci", "containers.create", "deny", "no-priv")
        self.metrics.count_decision("-", "containers.list", "allow", None)
        name = "dockserve_policy_decisions_total"
        self.assertEqual(
            sample(self.metrics, name, decision="deny", route="containers.create",
                   rule="no-priv", principal="ci"),
            2.0,
        )  # fmt: skip
        self.assertEqual(
            sample(self.metrics, name, decision="allow", route="containers.list",
                   rule="-", principal="-"),
            1.0,
        )  # fmt: skip

    def test_decisions_from_the_front_door(self) -> None:
        """
        Wired to the policy's front door, a refusal and an allowed request
        of alice's are counted under her name and the rule that decided.
        """
        rig = Rig(self, POLICY)
        rig.door.add_observer(self.metrics.count_decision)
        rig.peer = ALICE
        self.assertEqual(rig.request("GET", "/containers/json")[0], 200)
        cid = rig.create("mine")
        self.assertEqual(rig.request("GET", f"/containers/{cid}/export")[0], 403)
        name = "dockserve_policy_decisions_total"
        self.assertEqual(
            sample(self.metrics, name, decision="deny", route="containers.export",
                   rule="developer.rule.no-export", principal="alice"),
            1.0,
        )  # fmt: skip
        allowed = [
            s
            for f in self.metrics.registry.collect()
            if f.name == "dockserve_policy_decisions"
            for s in f.samples
            if s.labels["decision"] == "allow" and s.labels["principal"] == "alice"
        ]
        self.assertEqual(
            sorted(s.labels["route"] for s in allowed),
            ["containers.create", "containers.list"],
        )

    def test_no_principal_yet(self) -> None:
        """
        A request the policy has not named (a /_ping, or no policy file:
        C{-}) is labelled with its listener.
        """
        for answer in (None, "-"):
            metrics = DaemonMetrics(principal_of=lambda _, a=answer: a)
            metrics.observe_request(FakeRequest(UNIXAddress(b"/s")), "ping", 200, 0.1)
            self.assertEqual(
                sample(metrics, "dockserve_http_requests_total", route="ping",
                       status="200", principal="unix:///s"),
                1.0,
            )  # fmt: skip

    def test_through_the_middleware(self) -> None:
        """
        The middleware's hook feeds the counter: an answer, an error and a
        path no route has are each counted once, with the status the
        client got.
        """
        registry = CollectorRegistry()
        counted = RequestMetrics(registry)
        ok = wrap(lambda _: {"ok": True})
        ok.counters.observers.append(counted.observe_request)
        failing = wrap(raising(ValueError("bug")))
        failing.counters.observers.append(counted.observe_request)
        self.assertEqual(fetch(self, ok, "GET", "/h")[0], 200)
        self.assertEqual(fetch(self, ok, "GET", "/nowhere")[0], 404)
        self.assertEqual(fetch(self, failing, "GET", "/v1.50/h")[0], 500)
        self.flushLoggedErrors(ValueError)
        totals = {
            (s.labels["route"], s.labels["status"]): s.value
            for family in registry.collect()
            if family.name == "dockserve_http_requests"
            for s in family.samples
        }
        self.assertEqual(totals, {("h", "200"): 1.0, ("-", "404"): 1.0,
                                  ("h", "500"): 1.0})  # fmt: skip


class Listing:
    def __init__(self, *states: str) -> None:
        self.states = states

    def list_containers(self, *, all: bool = False) -> list[dict[str, Any]]:  # noqa: A002
        assert all
        return [{"State": s} for s in self.states]


class Images:
    def disk_usage(self) -> tuple[int, list[dict[str, Any]]]:
        return 4_400_000, [{"Id": "a"}, {"Id": "b"}]


class Daemon:
    def __init__(self, containers: Listing, events: EventBus) -> None:
        self.containers = containers
        self.images = Images()
        self.events = events


class StateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.metrics = DaemonMetrics()
        self.bus = EventBus(now_ns=lambda: 1, queue_limit=2)
        self.listing = Listing("running", "running", "paused", "exited",
                               "created", "restarting")  # fmt: skip
        self.metrics.watch_daemon(Daemon(self.listing, self.bus))

    def test_containers_by_state(self) -> None:
        """dockerd's metric and states: whatever is not running or paused is stopped."""
        name = "engine_daemon_container_states_containers"
        self.assertEqual(
            [sample(self.metrics, name, state=s) for s in ("running", "paused",
                                                           "stopped")],
            [2.0, 1.0, 3.0],
        )  # fmt: skip
        self.listing.states = ("exited",)
        self.assertEqual(sample(self.metrics, name, state="running"), 0.0)

    def test_images(self) -> None:
        """The store's layer bytes (docker system df) and its images."""
        self.assertEqual(sample(self.metrics, "dockserve_image_store_bytes"), 4.4e6)
        self.assertEqual(sample(self.metrics, "dockserve_images"), 2.0)

    def test_events_delivered_and_dropped(self) -> None:
        """
        Events published, delivered (one per reader reached) and lost with
        a reader dropped for falling behind (what it had queued and the
        event that overflowed).
        """
        fast: list[object] = []
        self.bus.subscribe(lambda _: True, fast.append)
        slow = self.bus.subscribe(lambda _: True, lambda _: None)
        slow.pauseProducing()
        for n in range(4):
            self.bus.publish("container", "start", f"c{n}")
        self.assertEqual(
            [
                sample(self.metrics, "engine_daemon_events_total"),
                sample(self.metrics, "dockserve_events_delivered_total"),
                sample(self.metrics, "dockserve_events_dropped_total"),
                sample(self.metrics, "dockserve_event_subscribers_dropped_total"),
                sample(self.metrics, "dockserve_event_subscribers"),
            ],
            [4.0, 4.0, 3.0, 1.0, 1.0],
        )

    def test_read_at_scrape_only(self) -> None:
        """
        Between two refreshes a collect gives the same values: the daemon
        is read on the reactor thread when a scrape arrives, never by the
        rendering thread.
        """
        name = "engine_daemon_container_states_containers"
        self.assertEqual(sample(self.metrics, name, state="running"), 2.0)
        self.listing.states = ()
        self.assertEqual(
            self.metrics.registry.get_sample_value(name, {"state": "running"}), 2.0
        )
        self.assertEqual(sample(self.metrics, name, state="running"), 0.0)

    def test_failing_source(self) -> None:
        """A source that fails is logged and left out; the others are served."""
        collector = StateCollector()

        def broken() -> list[GaugeMetricFamily]:
            raise RuntimeError("boom")

        collector.add(broken)
        collector.add(lambda: [GaugeMetricFamily("fine", "fine", value=1)])
        with capturedLogs() as events:
            collector.refresh()
        self.assertEqual([f.name for f in collector.collect()], ["fine"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(
            any("collector failed" in str(e.get("log_format")) for e in events)
        )


class ListenerStateTests(SynchronousTestCase):
    def test_held_and_open(self) -> None:
        """
        Connections the listen buffer holds until activation are reported
        per listener, and none once it has fired.
        """
        memory = MemoryReactorClock()
        activation: Deferred[None] = Deferred()
        buffer = ListenBufferEndpoint(
            TCP4ServerEndpoint(memory, 2376), activation, memory, timeout=60
        )
        listener = ListenerService("tcp://127.0.0.1:2376", buffer,
                                   Factory.forProtocol(Protocol))  # fmt: skip
        listener.privilegedStartService()
        metrics = DaemonMetrics()
        metrics.watch_listener(listener, None, buffer)
        factory = memory.tcpServers[0][1]
        for port in (5001, 5002):
            protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
            protocol.makeConnection(StringTransport())
        name = "dockserve_listen_buffer_held_connections"
        self.assertEqual(sample(metrics, name, listener="tcp://127.0.0.1:2376"), 2.0)
        activation.callback(None)
        self.assertEqual(sample(metrics, name, listener="tcp://127.0.0.1:2376"), 0.0)
        self.assertEqual(memory.getDelayedCalls(), [])


#: Families a scrape shows (as the parser names them: no _total).
EXPECTED_FAMILIES = (
    "dockserve_http_requests",
    "dockserve_http_request_duration_seconds",
    "dockserve_policy_decisions",
    "engine_daemon_container_states_containers",
    "dockserve_image_store_bytes",
    "engine_daemon_events",
    "dockserve_events_delivered",
    "dockserve_events_dropped",
    "dockserve_listen_buffer_held_connections",
    "process_resident_memory_bytes",
)


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
            return (
                response.status,
                response.headers["Content-Type"],
                response.read().decode(),
            )
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], ""


class ScrapeTests(TestCase):
    """A real scrape over HTTP on loopback, as Prometheus does it."""

    async def test_scrape(self) -> None:
        """
        /metrics answers the text format with every family, the daemon's
        state read on the reactor thread; any other path is a 404.
        """
        metrics = DaemonMetrics()
        bus = EventBus()
        metrics.watch_daemon(Daemon(Listing("running"), bus))
        threads: list[str] = []
        metrics.state.add(lambda: threads.append(threading.current_thread().name) or [])
        listener = metrics.listener(parse_address("127.0.0.1:0"), reactor)
        listener.privilegedStartService()
        self.addCleanup(listener.stopService)
        assert isinstance(listener, ListenerService)
        assert listener.port is not None
        port = listener.port.getHost().port
        bus.publish("container", "create", "c1")
        metrics.observe_request(FakeRequest(UNIXAddress(b"/s")), "ping", 200, 0.001)
        status, content_type, text = await deferToThread(
            _get, f"http://127.0.0.1:{port}/metrics"
        )
        self.assertEqual(status, 200)
        self.assertTrue(content_type.startswith("text/plain"), content_type)
        families = {f.name: f for f in text_string_to_metric_families(text)}
        for name in EXPECTED_FAMILIES:
            self.assertIn(name, families)
        self.assertEqual(families["engine_daemon_events"].samples[0].value, 1.0)
        self.assertEqual(threads, [threading.main_thread().name])
        status, _, _ = await deferToThread(_get, f"http://127.0.0.1:{port}/")
        self.assertEqual(status, 404)
