# -*- test-case-name: tests.api.test_debug -*-
"""
C{/debug/vars} and C{/debug/pprof/*} under C{--debug}: the seed's
C{AttachProfiler}, with Python's tools behind Go's names.

  - C{/debug/vars}: counters as JSON (command line, RSS, GC, connections,
    requests by route and status), like Go's C{expvar};
  - C{/debug/pprof/profile?seconds=N}: a cProfile of the reactor thread for
    N seconds, as a marshalled C{pstats} dump (C{python -m pstats FILE});
  - C{/debug/pprof/heap}: the top allocations C{tracemalloc} has seen;
  - C{/debug/pprof/goroutine}: every thread's stack and the reactor's
    pending delayed calls.

The router adds these routes only when C{--debug} is given; without it they
are 404 like any unknown path.
"""

import cProfile
import gc
import marshal
import os
import sys
import threading
import time
import traceback
import tracemalloc
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.web.server import Request

from dockserve.api.middleware import RequestCounters
from dockserve.api.params import query_int
from dockserve.api.route import Route
from dockserve.errors import Conflict, InvalidParameter

#: Frames kept per allocation once tracing starts.
TRACE_FRAMES = 1
#: Allocation sites C{/debug/pprof/heap} lists.
HEAP_TOP = 50
#: C{seconds} when a profile request gives none (Go's default).
DEFAULT_PROFILE_SECONDS = 30
#: The longest profile we take, so a typo cannot hold a connection for days.
MAX_PROFILE_SECONDS = 3600

_INDEX = b"""<html><head><title>/debug/pprof/</title></head><body>
<p>dockserve profiles (Python tools behind Go's names):</p>
<ul>
<li><a href="/debug/vars">/debug/vars</a>: counters as JSON</li>
<li><a href="/debug/pprof/goroutine">goroutine</a>: every thread's stack and
the reactor's pending calls</li>
<li><a href="/debug/pprof/heap">heap</a>: top allocations (tracemalloc)</li>
<li><a href="/debug/pprof/profile?seconds=30">profile</a>: cProfile of the
reactor thread for N seconds; read it with <code>python -m pstats FILE</code></li>
</ul></body></html>
"""


def _rss_bytes() -> int:
    """The resident set size of this process, from C{/proc/self/status}."""
    try:
        with Path("/proc/self/status").open(encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def _text(request: Request, body: str) -> bytes:
    request.responseHeaders.setRawHeaders(
        b"Content-Type", [b"text/plain; charset=utf-8"]
    )
    return body.encode("utf-8")


class DebugAPI:
    """The debug handlers."""

    def __init__(self, counters: RequestCounters, reactor: Any = None) -> None:
        """
        @param counters: The middleware's request counters.
        @param reactor: Schedules the end of a CPU profile and lists the
            pending delayed calls; the global reactor when C{None}.
        """
        self._counters = counters
        self._reactor = reactor
        self._started = time.time()
        self._profiling = False
        if not tracemalloc.is_tracing():
            # The heap profile can only show what was traced since now.
            tracemalloc.start(TRACE_FRAMES)

    def _get_reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor  # noqa: PLC0415

            self._reactor = reactor
        return self._reactor

    def debug_vars(self, request: Request) -> dict[str, Any]:
        """C{GET /debug/vars}: what an operator checks first."""
        del request
        return {
            "cmdline": sys.argv,
            "pid": os.getpid(),
            "uptime_seconds": round(time.time() - self._started, 3),
            "memstats": {
                "rss_bytes": _rss_bytes(),
                "gc_counts": list(gc.get_count()),
                "gc_collections": [s["collections"] for s in gc.get_stats()],
                "traced_bytes": tracemalloc.get_traced_memory()[0]
                if tracemalloc.is_tracing()
                else None,
            },
            "threads": threading.active_count(),
            "connections": {
                "open": self._counters.open_connections(),
                "requests_in_flight": self._counters.in_flight,
            },
            "requests": self._counters.by_route(),
        }

    def debug_pprof_index(self, request: Request) -> bytes:
        """C{GET /debug/pprof/}: links to the profiles."""
        request.responseHeaders.setRawHeaders(
            b"Content-Type", [b"text/html; charset=utf-8"]
        )
        return _INDEX

    def debug_pprof_profile(self, request: Request) -> Deferred[bytes]:
        """
        C{GET /debug/pprof/profile?seconds=N}: profile the reactor thread
        for N seconds, then answer the C{pstats} dump.

        The reactor goes on serving meanwhile: the profile ends from a
        delayed call, not a sleep.

        @raise InvalidParameter: For C{seconds} outside 1 to 3600.
        @raise Conflict: When a profile is already running.
        """
        seconds = query_int(request, "seconds", DEFAULT_PROFILE_SECONDS)
        if seconds is None or not 0 < seconds <= MAX_PROFILE_SECONDS:
            raise InvalidParameter(
                f"invalid value for seconds: {seconds}: "
                f"must be between 1 and {MAX_PROFILE_SECONDS}"
            )
        if self._profiling:
            raise Conflict("could not enable CPU profiling: a profile is running")
        profiler = cProfile.Profile()
        try:
            profiler.enable()
        except ValueError as e:
            # Another profiler (a debugger, coverage) already holds the hook.
            raise Conflict(f"could not enable CPU profiling: {e}") from None
        self._profiling = True

        def stop() -> None:
            profiler.disable()
            self._profiling = False

        def cancel(d: Deferred[bytes]) -> None:
            del d
            if call.active():
                call.cancel()
            stop()

        done: Deferred[bytes] = Deferred(cancel)

        def finish() -> None:
            stop()
            profiler.create_stats()
            request.responseHeaders.setRawHeaders(
                b"Content-Type", [b"application/octet-stream"]
            )
            request.responseHeaders.setRawHeaders(
                b"Content-Disposition", [b'attachment; filename="profile"']
            )
            done.callback(marshal.dumps(profiler.stats))

        call = self._get_reactor().callLater(seconds, finish)
        return done

    def debug_pprof_heap(self, request: Request) -> bytes:
        """C{GET /debug/pprof/heap}: the top allocation sites by size."""
        snapshot = tracemalloc.take_snapshot()
        stats = snapshot.statistics("lineno")
        current, peak = tracemalloc.get_traced_memory()
        lines = [
            (
                f"# tracemalloc: {current} bytes traced now, {peak} at peak, "
                f"{len(stats)} allocation sites; top {HEAP_TOP} by size"
            ),
        ]
        lines.extend(str(stat) for stat in stats[:HEAP_TOP])
        return _text(request, "\n".join(lines) + "\n")

    def debug_pprof_goroutine(self, request: Request) -> bytes:
        """
        C{GET /debug/pprof/goroutine}: every thread's stack, then the
        reactor's pending delayed calls (our goroutines are both).
        """
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        frames = sys._current_frames()
        lines = [f"threads: {len(frames)}", ""]
        for ident, frame in frames.items():
            lines.append(f"thread {ident} [{names.get(ident, '?')}]:")
            lines.extend(line.rstrip("\n") for line in traceback.format_stack(frame))
            lines.append("")
        reactor = self._get_reactor()
        delayed = (
            reactor.getDelayedCalls() if hasattr(reactor, "getDelayedCalls") else []
        )
        now = reactor.seconds()
        lines.append(f"reactor delayed calls: {len(delayed)}")
        lines.extend(
            f"  in {call.getTime() - now:.3f}s: {call.func!r}"
            for call in sorted(delayed, key=lambda c: c.getTime())
        )
        return _text(request, "\n".join(lines) + "\n")


ROUTES: list[Route] = [
    Route("GET", "/debug/vars", "debug_vars"),
    Route("GET", "/debug/pprof/", "debug_pprof_index"),
    Route("GET", "/debug/pprof/profile", "debug_pprof_profile"),
    Route("GET", "/debug/pprof/heap", "debug_pprof_heap"),
    Route("GET", "/debug/pprof/goroutine", "debug_pprof_goroutine"),
]
