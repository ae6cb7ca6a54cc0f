# -*- test-case-name: tests.api.test_events -*-
"""
C{GET /events}: the daemon's events as they happen, one JSON object per
line, flushed at once (moby's C{getEvents}).

C{since} replays what the bus kept from then on; C{until} bounds the
stream: a past C{until} makes a finite replay, a future one ends the
stream at that time. Without either, it streams until the client goes.
The client's connection is the stream's consumer: while it is behind,
the subscription queues, and a client that falls too far behind is
dropped: its stream ends (L{dockserve.daemon.events}).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred

from dockserve.api.middleware import visible
from dockserve.api.params import query, query_filters
from dockserve.api.route import Route
from dockserve.errors import InvalidParameter
from dockserve.timetypes import parse_timestamp

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from twisted.internet.interfaces import IPushProducer
    from twisted.web.server import Request


class EventStream(Protocol):
    """A live subscription: the client's transport pauses and resumes it."""

    def pauseProducing(self) -> None:
        """The client is behind."""

    def resumeProducing(self) -> None:
        """The client caught up."""

    def stopProducing(self) -> None:
        """The client went away."""

    def cancel(self) -> None:
        """Take no more events."""


class EventsBackend(Protocol):
    """What C{/events} asks of the daemon (its event bus)."""

    def replay(
        self, start_ns: int, end_ns: int | None, filters: Mapping[str, list[str]]
    ) -> list[dict[str, Any]]:
        """
        The kept events of the window that pass C{filters}, as the API's
        C{EventMessage}s.

        @raise InvalidParameter: A bad filter.
        """

    def stream(
        self,
        filters: Mapping[str, list[str]],
        deliver: Callable[[dict[str, Any]], None],
        on_dropped: Callable[[], None],
    ) -> EventStream:
        """
        Every new event that passes C{filters} to C{deliver}; C{on_dropped}
        when the client fell too far behind.

        @raise InvalidParameter: A bad filter.
        """


#: The last message encoded and its line: the bus hands one event's
#: message (the same object) to every subscriber in turn, so one encoding
#: serves them all (it was a third of the cost of delivering to 100).
_last_encoded: list[tuple[dict[str, Any], bytes]] = []


def _encoded(message: dict[str, Any]) -> bytes:
    """C{message} as one line of C{/events}."""
    if _last_encoded and _last_encoded[0][0] is message:
        return _last_encoded[0][1]
    line = json.dumps(message).encode() + b"\n"
    _last_encoded[:] = [(message, line)]
    return line


def _time(request: Request, name: str) -> float | None:
    value = query(request, name)
    if not value:
        return None
    try:
        return parse_timestamp(value)
    except InvalidParameter as e:
        raise InvalidParameter(f'invalid value for "{name}": {e.message}') from None


class EventsAPI:
    """The C{/events} handler."""

    def __init__(self, backend: EventsBackend, reactor: Any = None) -> None:
        self._backend = backend
        self._reactor = reactor

    def _clock(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor  # noqa: PLC0415

            return reactor
        return self._reactor

    def events(self, request: Request) -> Deferred[None] | None:
        """C{GET /events?since=&until=&filters=}."""
        filters = query_filters(request)
        since, until = _time(request, "since"), _time(request, "until")
        if since is not None and until is not None and since > until:
            raise InvalidParameter(
                f"`since` time ({query(request, 'since')}) cannot be after "
                f"`until` time ({query(request, 'until')})"
            )
        start_ns = int(since * 1e9) if since is not None else None
        end_ns = int(until * 1e9) if until is not None else None
        replayed = (
            self._backend.replay(start_ns, end_ns, filters)
            if start_ns is not None
            else []
        )

        # A caller that sees only its own objects (a policy's scope) gets
        # only their events.
        shows = visible(request)

        def send(message: dict[str, Any]) -> None:
            if shows is not None and not shows(message):
                return
            request.write(_encoded(message))  # type: ignore[no-untyped-call]

        clock = self._clock()
        now = clock.seconds()
        live = until is None or until > now
        done: Deferred[None] = Deferred()
        subscription: list[EventStream] = []
        timers: list[Any] = []

        def finish() -> None:
            if done.called:
                return
            for stream in subscription:
                stream.cancel()
                if request.channel is not None:  # not gone with the client
                    request.unregisterProducer()  # type: ignore[no-untyped-call]
            for timer in timers:
                if timer.active():
                    timer.cancel()
            done.callback(None)

        if live:
            # Subscribed before anything is written: no event falls between
            # the replay and the stream.
            subscription.append(self._backend.stream(filters, send, finish))
        request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/json"])
        # The status line and headers go now: a client waits for them
        # before it waits for events.
        request.write(b"")  # type: ignore[no-untyped-call]
        for message in replayed:
            send(message)
        if not live:
            return None
        producer: IPushProducer = subscription[0]  # type: ignore[assignment]
        request.registerProducer(producer, True)  # type: ignore[no-untyped-call]
        if until is not None:
            timers.append(clock.callLater(until - now, finish))
        request.notifyFinish().addBoth(lambda _: finish())
        return done


ROUTES: list[Route] = [Route("GET", "/events", "events")]
