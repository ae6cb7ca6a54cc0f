# -*- test-case-name: tests.api.test_threadstream -*-
"""
A response body written by a worker thread (an image archive, a
container's export, a C{docker cp} tar), at the pace of the client.

The worker writes to a L{ResponseWriter} as to a file. Every megabyte goes
to the response on the reactor thread, and the worker waits while the
client is behind (the writer is the request's push producer), so that the
daemon holds about a megabyte of a body however large it is and however
slowly it is read.
"""

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.web.server import Request

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

#: How much the worker gathers before handing it to the reactor.
CHUNK = 1 << 20


class ResponseWriter:
    """
    A file-like object a worker thread writes the body to.

    @ivar started: Some of the body has gone to the response (its status
        and headers with it): an error can no longer be an error response.
    """

    def __init__(self, request: Request, reactor: Any) -> None:
        self._request = request
        self._reactor = reactor
        self._owner = threading.get_ident()
        self._ready = threading.Event()
        self._ready.set()
        self._stopped = False
        self._buffer = bytearray()
        self.started = False

    # IPushProducer, on the reactor thread
    def pauseProducing(self) -> None:
        """The client is behind: the worker waits at its next flush."""
        self._ready.clear()

    def resumeProducing(self) -> None:
        """The client caught up."""
        self._ready.set()

    def stopProducing(self) -> None:
        """The client went away: the worker's next flush raises."""
        self._stopped = True
        self._ready.set()

    # file-like, on the worker thread
    def write(self, data: bytes) -> int:
        """Gather C{data}; flush each megabyte."""
        self._buffer += data
        if len(self._buffer) >= CHUNK:
            self.flush()
        return len(data)

    @property
    def stopped(self) -> bool:
        """Whether the client went away."""
        return self._stopped

    def flush_here(self) -> None:
        """Flush on the reactor thread, once the worker is done."""
        self._owner = threading.get_ident()
        if not self._stopped:
            self.flush()

    def flush(self) -> None:
        """
        Hand what is gathered to the response; on the worker thread, wait
        first while the client is behind.

        @raise OSError: The client went away.
        """
        if not self._buffer:
            return
        chunk, self._buffer = bytes(self._buffer), bytearray()
        self.started = True
        if threading.get_ident() == self._owner:
            self._request.write(chunk)  # type: ignore[no-untyped-call]
            return
        self._ready.wait()
        if self._stopped:
            raise OSError("the client went away")
        from twisted.internet.threads import blockingCallFromThread  # noqa: PLC0415

        blockingCallFromThread(self._reactor, self._request.write, chunk)
        self._ready.wait()
        if self._stopped:
            raise OSError("the client went away")


async def stream_from_thread(
    request: Request,
    reactor: Any,
    produce: Callable[[ResponseWriter], "Deferred[Any]"],
) -> None:
    """
    Answer C{request} with what C{produce} writes (in a worker thread) to
    the L{ResponseWriter} it is given.

    A failure before any byte was sent is raised, to become the error
    response; after that all the client can be told is that the body was
    cut short: the connection is aborted.
    """
    writer = ResponseWriter(request, reactor)
    request.registerProducer(writer, True)  # type: ignore[no-untyped-call]
    try:
        await produce(writer)
    except Exception:
        if request.channel is not None:
            request.unregisterProducer()  # type: ignore[no-untyped-call]
        if writer.stopped:
            return
        if not writer.started:
            raise
        transport = getattr(request.channel, "transport", None)
        if transport is not None:
            transport.abortConnection()
        return
    # The worker is finished: what is left in the buffer goes out from here.
    writer.flush_here()
    if request.channel is not None:
        request.unregisterProducer()  # type: ignore[no-untyped-call]
