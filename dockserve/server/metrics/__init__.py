# -*- test-case-name: tests.server.test_metrics -*-
"""
Prometheus metrics (C{--metrics-addr}), with the maintained
C{prometheus_client} library: one registry per daemon, what is counted as
it happens (L{requests}), what is read from the daemon at scrape time
(L{state}), and the listener that serves them (L{serve}).

docs/metrics.md says what each metric means.
"""

from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    disable_created_metrics,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from twisted.application.service import IService
from twisted.web.server import Site

from dockserve.server.listeners import ListenerService
from dockserve.server.metrics import serve, state
from dockserve.server.metrics.requests import PrincipalOf, RequestMetrics
from dockserve.server.metrics.serve import InvalidAddress, MetricsAddress, parse_address

__all__ = [
    "DaemonMetrics",
    "InvalidAddress",
    "MetricsAddress",
    "parse_address",
]

# The library's own global collectors stay in its global registry; ours
# has its own instances (below).
del GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR


class DaemonMetrics:
    """
    Everything one daemon exports.

    The command line (L{dockserve.tap}) wires it: the middleware's hook
    calls L{observe_request}, the policy engine's observer
    L{count_decision}, and the listeners and the daemon's areas are
    watched (L{watch_listener}, L{watch_daemon}) for the scrape-time
    metrics.

    @ivar registry: The registry C{/metrics} renders.
    """

    def __init__(self, principal_of: PrincipalOf | None = None) -> None:
        # Counters' *_created series double the series for nothing a
        # dashboard reads (dockerd has none).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self.requests = RequestMetrics(self.registry, principal_of)
        self.state = state.StateCollector()
        self.registry.register(self.state)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._listeners: list[tuple[str, Any, list[Any]]] = []
        self.state.add(state.listeners(self._listeners))
        self.observe_request = self.requests.observe_request
        self.count_decision = self.requests.count_decision

    def watch_listener(
        self, listener: ListenerService, limit: Any = None, buffer: Any = None
    ) -> None:
        """
        Report C{listener}'s connections (C{limit}: its
        L{dockserve.server.limits.ConnectionLimit}) and those its listen
        buffer holds (C{buffer}).
        """
        for name, known_limit, buffers in self._listeners:
            if name == listener.host and known_limit is limit:
                if buffer is not None:
                    buffers.append(buffer)
                break
        else:
            self._listeners.append(
                (listener.host, limit, [buffer] if buffer is not None else [])
            )

    def watch_daemon(self, daemon: Any) -> None:
        """
        Report C{daemon}'s containers by state, image store and event bus,
        for those of its areas that are there (a test backend may lack some).
        """
        containers: Any = getattr(daemon, "containers", None)
        if hasattr(containers, "list_containers"):
            self.state.add(state.containers(containers))
        images: Any = getattr(daemon, "images", None)
        if hasattr(images, "disk_usage"):
            self.state.add(state.images(images))
        bus: Any = getattr(daemon, "events", None)
        if hasattr(bus, "published"):
            self.state.add(state.events(bus))

    def site(self) -> Site:
        """The site the metrics listener serves: C{/metrics}."""
        return serve.site(self.registry, self.state.refresh)

    def listener(self, address: MetricsAddress, reactor: Any) -> IService:
        """The service that listens at C{address} (bound with the others)."""
        return ListenerService(
            address.text,
            serve.endpoint(address, reactor),
            self.site(),
            kind="metrics API",
        )
