# -*- test-case-name: tests.server.test_metrics -*-
"""
Metrics read from the daemon's state when Prometheus scrapes, not counted
on every request: containers by state, the image store's size, the event
bus's counters, and each listener's held and open connections.

C{prometheus_client}'s Twisted resource renders in a thread of the
reactor's pool, and the daemon's tables may only be read on the reactor
thread.  So L{StateCollector.refresh} reads every source on the reactor
thread when a scrape arrives (L{dockserve.server.metrics.serve}) and
keeps the result; C{collect}, called from the rendering thread, only hands
that out.

The sources speak of the daemon's areas by their shape (C{list_containers},
C{disk_usage}, the event bus's counters), so this module imports nothing
of L{dockserve.daemon}.
"""

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from twisted.logger import Logger

_log = Logger()

#: A source of metric families, read on the reactor thread.
Source = Callable[[], Iterable[Metric]]

#: dockerd's container states in C{engine_daemon_container_states_containers}:
#: anything neither running nor paused counts as stopped.
CONTAINER_STATES = ("running", "paused", "stopped")


class StateCollector(Collector):
    """
    The families the sources gave at the last L{refresh}.

    A source that fails is logged and left out of that scrape; the others
    are still served.
    """

    def __init__(self) -> None:
        self._sources: list[Source] = []
        self._families: tuple[Metric, ...] = ()

    def add(self, source: Source) -> None:
        """Read C{source} at every refresh."""
        self._sources.append(source)

    def refresh(self) -> None:
        """Read every source now (on the reactor thread)."""
        families: list[Metric] = []
        for source in self._sources:
            try:
                families.extend(source())
            except Exception:
                _log.failure("metrics: a collector failed; its metrics are left out")
        # One assignment: a scrape rendering meanwhile sees the old tuple
        # or the new one, never a mix.
        self._families = tuple(families)

    def collect(self) -> Iterator[Metric]:
        """What the last refresh read (in the rendering thread)."""
        return iter(self._families)


class Listing(Protocol):
    """What the container area answers: C{GET /containers/json?all=1}."""

    def list_containers(self, *, all: bool = False) -> list[dict[str, Any]]:  # noqa: A002
        """Every container's summary (its C{State} among them)."""
        ...


def containers(area: Listing) -> Source:
    """
    C{engine_daemon_container_states_containers{state}}: dockerd's metric,
    so dashboards made for dockerd read it as they are.
    """

    def read() -> Iterable[Metric]:
        counts = dict.fromkeys(CONTAINER_STATES, 0)
        for summary in area.list_containers(all=True):
            state = summary.get("State")
            counts[state if state in ("running", "paused") else "stopped"] += 1
        family = GaugeMetricFamily(
            "engine_daemon_container_states_containers",
            "The count of containers in various states",
            labels=["state"],
        )
        for state, count in counts.items():
            family.add_metric([state], count)
        return [family]

    return read


class ImageArea(Protocol):
    """What the image area answers: C{GET /system/df}'s images."""

    def disk_usage(self) -> tuple[int, list[dict[str, Any]]]:
        """What all layers take, and each image's summary."""
        ...


def images(area: ImageArea) -> Source:
    """
    C{dockserve_image_store_bytes}: what C{docker system df} shows as the
    images' size (unpacked layers, each counted once, measured when they
    were unpacked: no walk of the disk at scrape time); and
    C{dockserve_images}.
    """

    def read() -> Iterable[Metric]:
        size, summaries = area.disk_usage()
        return [
            GaugeMetricFamily(
                "dockserve_image_store_bytes",
                "Bytes the image store's unpacked layers take (docker system df)",
                value=size,
            ),
            GaugeMetricFamily(
                "dockserve_images", "Images in the store", value=len(summaries)
            ),
        ]

    return read


class Bus(Protocol):
    """The event bus's counters (L{dockserve.daemon.events.EventBus})."""

    published: int
    delivered: int
    lost: int
    dropped: int

    @property
    def subscribers(self) -> int:
        """How many read the bus now."""
        ...


def events(bus: Bus) -> Source:
    """
    The event bus: C{engine_daemon_events_total} (dockerd's: events
    published), events delivered to C{/events} readers, events lost with
    the readers dropped for falling behind, and the readers.
    """

    def read() -> Iterable[Metric]:
        return [
            CounterMetricFamily(
                "engine_daemon_events",
                "The number of events logged",
                value=bus.published,
            ),
            CounterMetricFamily(
                "dockserve_events_delivered",
                "Events handed to /events readers (one per reader an event reached)",
                value=bus.delivered,
            ),
            CounterMetricFamily(
                "dockserve_events_dropped",
                "Events that never reached a reader dropped for falling behind",
                value=bus.lost,
            ),
            CounterMetricFamily(
                "dockserve_event_subscribers_dropped",
                "/events readers dropped for falling behind",
                value=bus.dropped,
            ),
            GaugeMetricFamily(
                "dockserve_event_subscribers",
                "/events readers now",
                value=bus.subscribers,
            ),
        ]

    return read


class Held(Protocol):
    """A listen buffer (L{dockserve.server.listenbuffer.ListenBufferEndpoint})."""

    @property
    def held(self) -> int:
        """Connections held now."""
        ...


class Counted(Protocol):
    """A listener's L{dockserve.server.limits.ConnectionLimit}."""

    limit: int

    @property
    def open(self) -> int:
        """Connections open now."""
        ...


def listeners(
    watched: Sequence[tuple[str, Counted | None, Sequence[Held]]],
) -> Source:
    """
    Per listener (C{-H} as given): the connections its listen buffer holds
    until the daemon has restored its state, and the connections it has
    open, with the most it takes.
    """

    def read() -> Iterable[Metric]:
        held = GaugeMetricFamily(
            "dockserve_listen_buffer_held_connections",
            "Connections accepted before the daemon was ready, held until it is",
            labels=["listener"],
        )
        open_ = GaugeMetricFamily(
            "dockserve_connections",
            "Connections a listener has open now",
            labels=["listener"],
        )
        most = GaugeMetricFamily(
            "dockserve_connections_max",
            "The most connections a listener takes at once",
            labels=["listener"],
        )
        for name, limit, buffers in watched:
            held.add_metric([name], sum(b.held for b in buffers))
            if limit is not None:
                open_.add_metric([name], limit.open)
                most.add_metric([name], limit.limit)
        return [held, open_, most]

    return read
