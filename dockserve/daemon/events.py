# -*- test-case-name: tests.daemon.test_events -*-
"""
The event bus: every change of a container, image, volume or network, and
of the daemon, is published here once; C{GET /events} (and later the audit
log and the metrics) read from it.

As dockerd's (moby C{daemon/events}): a ring of recent events for
C{since} replays, and subscribers that each get every event that passes
their filter. Delivery is on the reactor thread, in publishing order. A
subscriber that cannot take events for the moment (its client reads
slowly: L{Subscription.pauseProducing}) has them queued, up to a bound;
one that falls further behind is dropped with a log line, so a slow
client never grows the daemon's memory nor slows anyone else (dockerd
drops events for it after 100 ms instead; dropping the subscriber makes
the loss visible to the client, whose stream ends).
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from twisted.logger import Logger

from dockserve.errors import InvalidParameter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

_log = Logger()

#: Events kept for C{since} (dockerd keeps 256).
RING_SIZE = 1024

#: Events queued for a paused subscriber before it is dropped.
QUEUE_LIMIT = 1024

#: The filter keys C{/events} knows (moby's C{daemon/events/filter.go}).
FILTER_KEYS = frozenset({
    "type", "event", "container", "image", "label", "network", "volume",
    "daemon", "scope", "plugin", "node", "service", "secret", "config",
})  # fmt: skip

#: Event types, as the API names them.
TYPES = frozenset({
    "container", "image", "volume", "network", "daemon", "plugin", "node",
    "service", "secret", "config", "builder",
})  # fmt: skip

#: Actions whose names carry a suffix (C{health_status: healthy},
#: C{exec_start: sh -c ...}): a filter naming them matches by prefix.
_PREFIXED_ACTIONS = frozenset({"health_status", "exec_create", "exec_start"})


@frozen
class Event:
    """
    One event, as moby's C{events.Message} carries it.

    @ivar type: C{container}, C{image}, C{volume}, C{network}, C{daemon}...
    @ivar action: C{create}, C{start}, C{die}, C{health_status: healthy}...
    @ivar actor_id: The object's ID (a container's, an image's, a
        volume's name, a network's ID).
    @ivar attributes: The actor's attributes (a container's labels,
        C{name}, C{image}; C{exitCode} on C{die}...).
    @ivar time_nano: When, in Unix nanoseconds.
    @ivar scope: C{local} (C{swarm} events do not exist here).
    """

    type: str
    action: str
    actor_id: str
    attributes: Mapping[str, str] = field(factory=dict)
    time_nano: int = 0
    scope: str = "local"
    _message: list[dict[str, Any]] = field(
        factory=list, init=False, eq=False, repr=False
    )

    def message(self) -> dict[str, Any]:
        """
        The JSON object C{/events} sends: the deprecated C{status}, C{id}
        and C{from} for container and image events (as dockerd fills
        them), then C{Type}, C{Action}, C{Actor}, C{scope}, C{time},
        C{timeNano}. Made once and shared by every subscriber (so one
        encoding serves them all): callers must not change it.
        """
        if not self._message:
            self._message.append(self._make_message())
        return self._message[0]

    def _make_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {}
        if self.type in {"container", "image"}:
            message["status"] = self.action
            message["id"] = self.actor_id
            if self.type == "container" and self.attributes.get("image"):
                message["from"] = self.attributes["image"]
        message["Type"] = self.type
        message["Action"] = self.action
        message["Actor"] = {"ID": self.actor_id, "Attributes": dict(self.attributes)}
        message["scope"] = self.scope
        message["time"] = self.time_nano // 1_000_000_000
        message["timeNano"] = self.time_nano
        return message


def _strip_tag(name: str) -> str:
    """An image reference without its tag (C{busybox:1} -> C{busybox})."""
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


@frozen
class EventFilter:
    """
    C{/events}'s C{filters}, as moby's C{events.Filter} applies them: every
    key given must match (values of one key are alternatives).
    """

    values: Mapping[str, frozenset[str]] = field(factory=dict)

    @classmethod
    def parse(cls, filters: Mapping[str, Iterable[str]]) -> EventFilter:
        """
        From the decoded C{filters} parameter.

        @raise InvalidParameter: An unknown key, as dockerd says it.
        """
        for key in filters:
            if key not in FILTER_KEYS:
                raise InvalidParameter(f"invalid filter '{key}'")
        return cls({key: frozenset(v) for key, v in filters.items() if v})

    def _exact(self, key: str, *sources: str) -> bool:
        wanted = self.values.get(key)
        return not wanted or any(s in wanted for s in sources)

    def _fuzzy(self, key: str, *sources: str) -> bool:
        wanted = self.values.get(key)
        if not wanted:
            return True
        return any(s and s.startswith(w) for s in sources for w in wanted)

    def _named(self, event: Event, kind: str) -> bool:
        if kind not in self.values:
            return True
        if event.type != kind:
            # A container filter passes no image event (moby: the ID and
            # the name attribute of any actor are compared, which an
            # image's seldom match; here only the actor's own kind).
            return False
        return self._fuzzy(kind, event.actor_id, event.attributes.get("name", ""))

    def _image(self, event: Event) -> bool:
        if "image" not in self.values:
            return True
        name = event.attributes.get("name" if event.type == "image" else "image", "")
        return self._exact(
            "image", event.actor_id, name, _strip_tag(event.actor_id), _strip_tag(name)
        )

    def _labels(self, event: Event) -> bool:
        for spec in self.values.get("label", ()):
            key, eq, value = spec.partition("=")
            if key not in event.attributes:
                return False
            if eq and event.attributes[key] != value:
                return False
        return True

    def _action(self, event: Event) -> bool:
        wanted = self.values.get("event")
        if not wanted:
            return True
        if wanted & _PREFIXED_ACTIONS:
            return self._fuzzy("event", event.action)
        return event.action in wanted

    def __call__(self, event: Event) -> bool:
        """Whether C{event} passes."""
        return (
            self._action(event)
            and self._exact("type", event.type)
            and self._exact("scope", event.scope)
            and all(
                self._named(event, kind)
                for kind in ("container", "daemon", "volume", "network", "plugin")
            )
            and self._image(event)
            and self._labels(event)
        )


class Subscription:
    """
    One reader of the bus: C{deliver} gets each event that passes its
    filter. It is a push producer for the reader's transport: paused, it
    queues events; past L{QUEUE_LIMIT} it is dropped (C{on_dropped}).
    """

    def __init__(
        self,
        bus: EventBus,
        wanted: Callable[[Event], bool],
        deliver: Callable[[Event], None],
        on_dropped: Callable[[], None],
    ) -> None:
        self._bus = bus
        self._wanted = wanted
        self._deliver = deliver
        self._on_dropped = on_dropped
        self._queue: deque[Event] = deque()
        self._paused = False
        self.active = True

    def offer(self, event: Event) -> None:
        """A new event on the bus."""
        if not self.active or not self._wanted(event):
            return
        if not self._paused:
            self._bus.delivered += 1
            self._deliver(event)
            return
        if len(self._queue) >= self._bus.queue_limit:
            _log.warn(
                "events: a subscriber fell {n} events behind; it is dropped",
                n=len(self._queue),
            )
            # What it had queued, and this one, never reach its client.
            self._bus.lost += len(self._queue) + 1
            self.cancel()
            self._on_dropped()
            return
        self._queue.append(event)

    def pauseProducing(self) -> None:
        """The reader is behind: queue from now on."""
        self._paused = True

    def resumeProducing(self) -> None:
        """The reader caught up: what was queued first, then live."""
        self._paused = False
        while self._queue and not self._paused and self.active:
            self._bus.delivered += 1
            self._deliver(self._queue.popleft())

    def stopProducing(self) -> None:
        """The reader went away."""
        self.cancel()

    def cancel(self) -> None:
        """Take no more events."""
        self.active = False
        self._queue.clear()
        self._bus.unsubscribe(self)


class EventBus:
    """
    Where every event is published, kept (a ring of L{RING_SIZE}) and
    handed to subscribers.

    @param now_ns: The clock, Unix nanoseconds (tests give their own).
    """

    def __init__(
        self,
        now_ns: Callable[[], int] = time.time_ns,
        ring_size: int = RING_SIZE,
        queue_limit: int = QUEUE_LIMIT,
    ) -> None:
        self._now_ns = now_ns
        self._ring: deque[Event] = deque(maxlen=ring_size)
        self._subscribers: list[Subscription] = []
        self.queue_limit = queue_limit
        #: How many subscribers were dropped for falling behind.
        self.dropped = 0
        #: Events published, handed to subscribers, and lost with the
        #: subscribers dropped (for the metrics, read at scrape time).
        self.published = 0
        self.delivered = 0
        self.lost = 0

    def publish(
        self,
        type_: str,
        action: str,
        actor_id: str,
        attributes: Mapping[str, str] | None = None,
    ) -> Event:
        """Stamp, keep and deliver one event; the event is returned."""
        event = Event(type_, action, actor_id, dict(attributes or {}), self._now_ns())
        self._ring.append(event)
        self.published += 1
        for subscriber in list(self._subscribers):
            subscriber.offer(event)
        return event

    def since(
        self, start_ns: int, end_ns: int | None, wanted: Callable[[Event], bool]
    ) -> list[Event]:
        """The kept events from C{start_ns} to C{end_ns} that C{wanted} takes."""
        return [
            e
            for e in self._ring
            if e.time_nano >= start_ns
            and (end_ns is None or e.time_nano <= end_ns)
            and wanted(e)
        ]

    def subscribe(
        self,
        wanted: Callable[[Event], bool],
        deliver: Callable[[Event], None],
        on_dropped: Callable[[], None] = lambda: None,
    ) -> Subscription:
        """Deliver every new event C{wanted} takes to C{deliver}."""
        subscription = Subscription(self, wanted, deliver, self._dropped(on_dropped))
        self._subscribers.append(subscription)
        return subscription

    def _dropped(self, on_dropped: Callable[[], None]) -> Callable[[], None]:
        def dropped() -> None:
            self.dropped += 1
            on_dropped()

        return dropped

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget C{subscription} (idempotent)."""
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    # --- what GET /events asks (dockserve.api.events.EventsBackend) ---

    def replay(
        self, start_ns: int, end_ns: int | None, filters: Mapping[str, list[str]]
    ) -> list[dict[str, Any]]:
        """
        The kept events of the window that pass C{filters}, as messages.

        @raise InvalidParameter: An unknown filter key.
        """
        wanted = EventFilter.parse(filters)
        return [e.message() for e in self.since(start_ns, end_ns, wanted)]

    def stream(
        self,
        filters: Mapping[str, list[str]],
        deliver: Callable[[dict[str, Any]], None],
        on_dropped: Callable[[], None],
    ) -> Subscription:
        """
        Every new event that passes C{filters}, as a message, to C{deliver}.

        @raise InvalidParameter: An unknown filter key.
        """
        wanted = EventFilter.parse(filters)
        return self.subscribe(wanted, lambda e: deliver(e.message()), on_dropped)

    @property
    def subscribers(self) -> int:
        """How many read the bus now."""
        return len(self._subscribers)
