# -*- test-case-name: tests.server.test_limits -*-
"""
Bounds on what clients may hold: time to send a request head, connections
per listener, and the open files the process may use.

A client that dribbles a request head a byte at a time keeps resetting
Twisted's 60 s idle timer, so it could hold a connection (and a descriptor)
for ever; at the common limit of 1024 descriptors, about a thousand of them
made the daemon refuse everyone (EMFILE).  Three things bound that, as
dockerd (Go's C{net/http}) does or would:

  - L{HeadDeadlineChannel}: the request head (the TLS handshake included)
    must be complete within L{HEAD_TIMEOUT} seconds of the connection, or
    of the previous answer on a kept-alive connection (Go's
    C{ReadHeaderTimeout}).  Once the head is in, nothing is timed: a
    request may stay quiet for hours (C{docker wait}, C{logs -f}, a
    hijacked attach or exec).
  - L{raise_open_file_limit}: the soft C{RLIMIT_NOFILE} is raised to the
    hard limit at start, as Go's runtime does for every program.
  - L{ConnectionLimit}: each listener holds at most
    L{connections_per_listener} connections at once, so that one listener
    flooded leaves descriptors for the daemon's own work and the other
    listeners.  When full, a new connection takes the place of the oldest
    one not in a request (slow or idle), so slow clients cannot lock out
    quick ones; if all are in requests it is refused.  Either is logged.
"""

import resource
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from zope.interface import implementer

#: Seconds a client has to send a complete request head (dockerd's is 5
#: minutes; the docker CLI and the SDK send a head in one write, and
#: Twisted's idle timer already closes a silent connection after 60 s).
HEAD_TIMEOUT = 60.0

#: Open files kept out of the listeners' share for the daemon itself: its
#: stores and logs, conmon's attach sockets, the pipes of runc and exec.
RESERVED_FILES = 256

#: The most connections one listener takes, however many files it may
#: open: far above what one engine's clients hold (each attach, logs -f or
#: wait is one), low enough that a flood costs tens of megabytes, not more.
MAX_PER_LISTENER = 4096

#: The fewest connections a listener takes, even when files are scarce.
MIN_PER_LISTENER = 32

#: Seconds between two log lines about the same full listener.
FULL_LOG_INTERVAL = 60.0

_log = Logger()


class HeadDeadlineChannel(HTTPChannel):
    """
    An L{HTTPChannel} that closes a connection whose request head is not
    complete within C{head_timeout} seconds, however slowly its bytes come.

    The deadline runs from the connection (the TLS handshake counts) and,
    on a kept-alive connection, from the end of the previous answer; it
    stops when the head is complete.  A hijacked request never finishes as
    HTTP, so no deadline runs after it.
    """

    def __init__(self, head_timeout: float = HEAD_TIMEOUT) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.head_timeout = head_timeout
        self._head_call: IDelayedCall | None = None

    def connectionMade(self) -> None:
        """Start the deadline for the first head."""
        super().connectionMade()  # type: ignore[no-untyped-call]
        self._arm()

    def allHeadersReceived(self) -> None:
        """
        The head is complete: no deadline until the answer is done, and the
        connection is busy (its listener will not evict it to make room).
        """
        self._disarm()
        mark_busy(self.transport, True)
        super().allHeadersReceived()  # type: ignore[no-untyped-call]

    def requestDone(self, request: Any) -> None:
        """
        The answer is done: the next head on a kept-alive connection has
        its own deadline, armed before any pipelined head is parsed.
        """
        if self.persistent:
            self._arm()
            mark_busy(self.transport, False)
        super().requestDone(request)  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Gone: forget the deadline."""
        self._disarm()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    def _arm(self) -> None:
        self._disarm()
        self._head_call = self.callLater(self.head_timeout, self._too_slow)  # type: ignore[no-untyped-call]

    def _disarm(self) -> None:
        if self._head_call is not None and self._head_call.active():
            self._head_call.cancel()
        self._head_call = None

    def _too_slow(self) -> None:
        self._head_call = None
        _log.info(
            "Closing {peer}: no complete request head within {seconds:g} s",
            peer=str(self.transport.getPeer()) if self.transport else "?",
            seconds=self.head_timeout,
        )
        # Twisted's idle-timeout path: close, and abort if that hangs.
        self.timeoutConnection()  # type: ignore[no-untyped-call]


def channel_factory(head_timeout: float = HEAD_TIMEOUT) -> Callable[[], HTTPChannel]:
    """What a L{twisted.web.server.Site} calls for each connection's channel."""
    return lambda: HeadDeadlineChannel(head_timeout)


def raise_open_file_limit(
    get: Callable[[int], tuple[int, int]] = resource.getrlimit,
    set: Callable[[int, tuple[int, int]], None] = resource.setrlimit,  # noqa: A002
) -> tuple[int, int]:
    """
    Raise the soft C{RLIMIT_NOFILE} to the hard limit, as Go's runtime does.

    A login shell's 1024 is the kernel's old default for C{select()}; the
    reactor uses epoll and needs no such bound.  Child processes (conmon,
    runc, containers) inherit the raised limit, as they did under systemd's
    C{LimitNOFILE=infinity}.

    @return: The soft limit before and after.
    """
    soft, hard = get(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft, soft
    try:
        set(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        return soft, soft
    return soft, hard


def connections_per_listener(open_files: int, listeners: int) -> int:
    """
    How many connections each of C{listeners} may hold: half of the files
    left after L{RESERVED_FILES}, shared (a connection's attach or exec
    opens more), within L{MIN_PER_LISTENER} and L{MAX_PER_LISTENER}.
    """
    share = (open_files - RESERVED_FILES) // (2 * max(listeners, 1))
    return max(MIN_PER_LISTENER, min(MAX_PER_LISTENER, share))


class ConnectionLimit:
    """
    The connections one listener holds, and the most it may.

    When the listener is full, a new connection takes the place of the
    oldest one that is not busy with a request (still sending its head, or
    idle between two requests): a flood of slow clients then cannot lock
    out a client that sends its request at once, as every docker client
    does.  Only when every connection is busy (attached, following logs,
    waiting) is the new one refused.

    @ivar host: The listener, as named in the log.
    """

    def __init__(self, host: str, limit: int, clock: IReactorTime) -> None:
        self.host = host
        self.limit = limit
        self._clock = clock
        #: Each open connection, oldest first, and whether it is busy.
        self._open: dict[_Counted, bool] = {}
        self._refused = 0
        self._evicted = 0
        self._logged_at: float | None = None

    @property
    def open(self) -> int:
        """How many connections count now."""
        return len(self._open)

    def admit(self) -> bool:
        """Whether one more connection may be taken now, making room if need be."""
        if len(self._open) < self.limit:
            return True
        idle = next((c for c, busy in self._open.items() if not busy), None)
        if idle is None:
            self._refused += 1
        else:
            self._evicted += 1
            del self._open[idle]
            idle.evict()
        self._log_full()
        return idle is not None

    def add(self, connection: "_Counted") -> None:
        """Count C{connection}, not busy yet."""
        self._open[connection] = False

    def remove(self, connection: "_Counted") -> None:
        """C{connection} is gone (or was evicted already)."""
        self._open.pop(connection, None)

    def set_busy(self, connection: "_Counted", busy: bool) -> None:
        """Whether C{connection} is in a request (its head is in) or not."""
        if connection in self._open:
            self._open[connection] = busy

    def _log_full(self) -> None:
        now = self._clock.seconds()
        if self._logged_at is not None and now - self._logged_at < FULL_LOG_INTERVAL:
            return
        _log.warn(
            "{host} holds {limit} connections, as many as one listener may:"
            " closed {evicted} that were not in a request (slow or idle) and"
            " refused {refused} new one(s) to stay there",
            host=self.host,
            limit=self.limit,
            evicted=self._evicted,
            refused=self._refused,
        )
        self._logged_at = now
        self._refused = self._evicted = 0


class _Counted(ProtocolWrapper):
    """A connection a L{ConnectionLimit} counts until it is lost."""

    limit: ConnectionLimit

    def evict(self) -> None:
        """Close the connection at once, to make room for a new one."""
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()


def mark_busy(transport: object, busy: bool) -> None:
    """
    Tell the listener's limit whether the connection under C{transport}
    (itself, or below TLS) is in a request, so it is not evicted then.
    """
    for _ in range(4):  # channel -> TLS -> counted connection, at most
        if isinstance(transport, _Counted):
            transport.limit.set_busy(transport, busy)
            return
        transport = getattr(transport, "transport", None)
        if transport is None:
            return


class _LimitingFactory(WrappingFactory[_Counted]):
    """
    Build the real protocol while the listener has room (or can make some);
    else nothing, so that the port closes the new connection at once (no
    TLS work, no buffers).
    """

    protocol = _Counted

    def __init__(self, factory: IProtocolFactory, limit: ConnectionLimit) -> None:
        super().__init__(factory)  # type: ignore[no-untyped-call]
        self._limit = limit

    def buildProtocol(self, addr: IAddress | None) -> _Counted | None:  # type: ignore[override]
        if not self._limit.admit():
            return None
        inner: IProtocol | None = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            return None
        counted = _Counted(self, inner)
        counted.limit = self._limit
        self._limit.add(counted)
        return counted

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        """Counted in L{buildProtocol} already."""

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        """The connection is gone: it no longer counts."""
        if isinstance(p, _Counted):
            self._limit.remove(p)


@implementer(IStreamServerEndpoint)
class LimitedEndpoint:
    """
    Listen on C{endpoint}, taking at most C{limit}'s connections at once.

    It wraps the socket's endpoint, below TLS, so a refused connection
    costs no handshake.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, limit: ConnectionLimit) -> None:
        self._endpoint = endpoint
        self._limit = limit

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen with the limiting factory in front of C{protocolFactory}."""
        return self._endpoint.listen(limited(protocolFactory, self._limit))


def limited(factory: IProtocolFactory, limit: ConnectionLimit) -> IProtocolFactory:
    """C{factory}, refusing connections beyond C{limit}."""
    return _LimitingFactory(factory, limit)
