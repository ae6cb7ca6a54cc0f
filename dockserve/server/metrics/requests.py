# -*- test-case-name: tests.server.test_metrics -*-
"""
What is counted as it happens: each request once, when the middleware
writes its log line (L{RequestMetrics.observe_request}), and each policy
decision (L{RequestMetrics.count_decision}).

Both are called on the reactor thread, once per request: a label lookup
in a dictionary and two increments.  Labels are bounded: a route is one of
the route table's names, a status one of the few the API answers, a
principal one of the listeners (or of the principals a policy names).
"""

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

#: Request durations, from a C{/_ping} (under a millisecond) to a pull or
#: a C{wait} (minutes); hijacked streams (attach, exec) land in the top.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"),
)  # fmt: skip

#: Who made a request, when nothing better is known (no policy engine):
#: C{None} lets the listener name it.
PrincipalOf = Callable[[Any], str | None]


def _no_principal(request: Any) -> None:
    del request


def address_text(address: object) -> str:
    """An address as a C{-H} value would give it (C{tcp://h:p}, C{unix://p})."""
    name = getattr(address, "name", None)
    if name is not None:
        return f"unix://{os.fsdecode(name)}"
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None or port is None:
        return "-"
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


class RequestMetrics:
    """
    Requests by route, status and principal; their latency by route; and
    policy decisions.

    @ivar principal_of: Who made a request (the policy engine's name for
        its principal), or C{None}: the listener it came in on, as its
        C{-H} names it, is used instead (L{listener_of}).
    """

    def __init__(
        self, registry: CollectorRegistry, principal_of: PrincipalOf | None = None
    ) -> None:
        self.principal_of: PrincipalOf = principal_of or _no_principal
        self._requests = Counter(
            "dockserve_http_requests",
            "API requests answered, by route, status and principal",
            ["route", "status", "principal"],
            registry=registry,
        )
        self._latency = Histogram(
            "dockserve_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer, by route",
            ["route"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self._decisions = Counter(
            "dockserve_policy_decisions",
            "Policy decisions, by decision, route, rule and principal",
            ["decision", "route", "rule", "principal"],
            registry=registry,
        )
        self._children: dict[tuple[str, int, str], Any] = {}
        self._histograms: dict[str, Any] = {}

    def listener_of(self, request: Any) -> str:
        """
        The listener C{request} came in on, as its C{-H} names it: each
        listener has a site of its own that knows it
        (L{dockserve.tap.make_site}); elsewhere, the address it reached.
        """
        site = getattr(getattr(request, "channel", None), "site", None)
        name = getattr(site, "listener", None)
        if isinstance(name, str):
            return name
        return address_text(request.getHost())

    def observe_request(
        self, request: Any, route: str, status: int, seconds: float
    ) -> None:
        """
        One request answered (the middleware's hook, with its log line).

        @param route: The route's name (C{-} for a path no route has).
        @param status: The status the client got (101 for a hijack).
        @param seconds: From its arrival to the end of its answer.
        """
        principal = self.principal_of(request)
        if principal in (None, "-"):
            # No policy, or none applied yet (a /_ping is never checked).
            principal = self.listener_of(request)
        key = (route, status, principal)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._requests.labels(
                route, str(status), principal
            )
        child.inc()
        histogram = self._histograms.get(route)
        if histogram is None:
            histogram = self._histograms[route] = self._latency.labels(route)
        histogram.observe(seconds)

    def count_decision(
        self, principal: str, route: str, verdict: str, rule: str | None
    ) -> None:
        """
        One policy decision: the policy engine's decision observer
        (L{dockserve.api.policy.door.FrontDoor.add_observer}).

        @param principal: Who asked, as the policy names it (C{-} without
            a policy file).
        @param route: The route, by dockerd's name (C{containers.create}).
        @param verdict: C{allow}, C{deny}, or C{learn} (refused in learning
            mode, so let through).
        @param rule: The rule that decided, or C{None} (no policy file):
            counted as C{-}.
        """
        self._decisions.labels(verdict, route, rule or "-", principal).inc()
