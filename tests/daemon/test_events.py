"""Tests for L{dockserve.daemon.events}: the bus, its filters and its flow."""

from itertools import count

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon.events import Event, EventBus, EventFilter
from dockserve.errors import InvalidParameter


def _bus(**kwargs: int) -> EventBus:
    ticks = count(1_000_000_000_000_000_000, 1_000)
    return EventBus(now_ns=lambda: next(ticks), **kwargs)


class MessageTests(SynchronousTestCase):
    def test_container_message(self) -> None:
        """Container events carry the deprecated status, id and from, as dockerd's."""
        event = Event("container", "start", "c1", {"image": "busybox", "name": "web"},
                      1_765_000_000_123_456_789)  # fmt: skip
        self.assertEqual(
            event.message(),
            {"status": "start", "id": "c1", "from": "busybox", "Type": "container",
             "Action": "start",
             "Actor": {"ID": "c1", "Attributes": {"image": "busybox", "name": "web"}},
             "scope": "local", "time": 1_765_000_000,
             "timeNano": 1_765_000_000_123_456_789},
        )  # fmt: skip
        self.assertEqual(list(event.message()), ["status", "id", "from", "Type",
                         "Action", "Actor", "scope", "time", "timeNano"])  # fmt: skip

    def test_network_message(self) -> None:
        """Other types have no deprecated fields."""
        message = Event("network", "create", "n1", {"name": "appnet"}, 5).message()
        self.assertNotIn("status", message)
        self.assertNotIn("id", message)


class FilterTests(SynchronousTestCase):
    def passes(self, filters: dict[str, list[str]], event: Event) -> bool:
        return EventFilter.parse(filters)(event)

    def test_unknown_key(self) -> None:
        error = self.assertRaises(InvalidParameter, EventFilter.parse, {"bogus": ["x"]})
        self.assertEqual(error.message, "invalid filter 'bogus'")

    def test_type_and_event(self) -> None:
        start = Event("container", "start", "c1", {"name": "web"})
        self.assertTrue(self.passes({}, start))
        self.assertTrue(self.passes({"type": ["container"], "event": ["start", "die"]},
                                    start))  # fmt: skip
        self.assertFalse(self.passes({"type": ["image"]}, start))
        self.assertFalse(self.passes({"event": ["sta"]}, start))

    def test_prefixed_actions(self) -> None:
        """health_status, exec_create and exec_start match their suffixed actions."""
        health = Event("container", "health_status: healthy", "c1")
        self.assertTrue(self.passes({"event": ["health_status"]}, health))
        exec_start = Event("container", "exec_start: sh -c true", "c1")
        self.assertTrue(self.passes({"event": ["exec_start"]}, exec_start))
        self.assertFalse(self.passes({"event": ["exec_create"]}, exec_start))

    def test_container_by_id_prefix_or_name(self) -> None:
        event = Event("container", "die", "abcdef", {"name": "web"})
        for value in ("abc", "abcdef", "web", "we"):
            self.assertTrue(self.passes({"container": [value]}, event), value)
        self.assertFalse(self.passes({"container": ["db"]}, event))
        image = Event("image", "pull", "sha256:x", {"name": "web"})
        self.assertFalse(self.passes({"container": ["web"]}, image))

    def test_image(self) -> None:
        """An image by ID or name, with or without its tag; a container by its image."""
        pulled = Event("image", "pull", "busybox:1", {"name": "busybox:1"})
        for value in ("busybox", "busybox:1"):
            self.assertTrue(self.passes({"image": [value]}, pulled), value)
        self.assertFalse(self.passes({"image": ["busybox:2"]}, pulled))
        started = Event("container", "start", "c1", {"image": "reg:5000/app:2"})
        self.assertTrue(self.passes({"image": ["reg:5000/app"]}, started))

    def test_labels(self) -> None:
        event = Event("container", "start", "c1", {"com.x/project": "p", "tier": "db"})
        self.assertTrue(self.passes({"label": ["com.x/project=p", "tier"]}, event))
        self.assertFalse(self.passes({"label": ["com.x/project=q"]}, event))
        self.assertFalse(self.passes({"label": ["missing"]}, event))


class BusTests(SynchronousTestCase):
    def test_publish_deliver_keep(self) -> None:
        """Subscribers get what passes their filter, in order; the ring keeps all."""
        bus = _bus()
        got: list[str] = []
        bus.subscribe(EventFilter.parse({"type": ["container"]}),
                      lambda e: got.append(e.action))  # fmt: skip
        bus.publish("container", "create", "c1")
        bus.publish("image", "pull", "i1")
        bus.publish("container", "start", "c1", {"name": "web"})
        self.assertEqual(got, ["create", "start"])
        kept = bus.since(0, None, lambda _: True)
        self.assertEqual([e.action for e in kept], ["create", "pull", "start"])
        self.assertLess(kept[0].time_nano, kept[1].time_nano)

    def test_since_until(self) -> None:
        bus = _bus()
        times = [bus.publish("container", a, "c").time_nano for a in "abcd"]
        window = bus.since(times[1], times[2], lambda _: True)
        self.assertEqual([e.action for e in window], ["b", "c"])

    def test_ring_bound(self) -> None:
        bus = _bus(ring_size=3)
        for action in "abcde":
            bus.publish("container", action, "c")
        self.assertEqual([e.action for e in bus.since(0, None, lambda _: True)],
                         ["c", "d", "e"])  # fmt: skip

    def test_paused_subscriber_queues_then_catches_up(self) -> None:
        bus = _bus()
        got: list[str] = []
        subscription = bus.subscribe(lambda _: True, lambda e: got.append(e.action))
        subscription.pauseProducing()
        bus.publish("container", "a", "c")
        bus.publish("container", "b", "c")
        self.assertEqual(got, [])
        subscription.resumeProducing()
        bus.publish("container", "c", "c")
        self.assertEqual(got, ["a", "b", "c"])

    def test_slow_subscriber_dropped(self) -> None:
        """
        A subscriber that stays paused past the queue bound is dropped (its
        stream is ended), the others go on; memory stays bounded.
        """
        bus = _bus(queue_limit=5)
        dropped: list[bool] = []
        fast: list[str] = []
        slow = bus.subscribe(
            lambda _: True, lambda _: None, lambda: dropped.append(True)
        )
        bus.subscribe(lambda _: True, lambda e: fast.append(e.action))
        slow.pauseProducing()
        for n in range(10):
            bus.publish("container", str(n), "c")
        self.assertEqual(dropped, [True])
        self.assertFalse(slow.active)
        self.assertEqual(bus.subscribers, 1)
        self.assertEqual(bus.dropped, 1)
        self.assertEqual(len(fast), 10)

    def test_stop_unsubscribes(self) -> None:
        bus = _bus()
        subscription = bus.subscribe(lambda _: True, lambda _: None)
        subscription.stopProducing()
        self.assertEqual(bus.subscribers, 0)
        subscription.cancel()
