# -*- test-case-name: tests.server.test_listenbuffer -*-
"""
Listen at once, serve when ready: the seed's C{listenbuffer} on Twisted endpoints.

A daemon restoring its state should neither refuse connections (clients
retry badly) nor answer before it knows its containers.  L{ListenBufferEndpoint}
binds immediately, holds each accepted connection, keeps whatever the client
sends meanwhile (up to L{HELD_BYTES_LIMIT}, then it stops reading, so a big
upload waits in the kernel's buffers and the client's rather than in our
memory), and hands the connection to the real protocol when the activation
L{Deferred} fires.  A connection held longer than the timeout is
answered with a JSON 503 and closed, rather than hanging forever.
"""

import json
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.defer import Deferred, FirstError
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IProtocolNegotiationFactory,
    IPushProducer,
    IReactorCore,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

if TYPE_CHECKING:
    from collections.abc import Callable

#: How long a connection may wait for activation (dockerd waits forever).
DEFAULT_TIMEOUT = 60.0

#: Bytes kept from a held connection before it is no longer read.
HELD_BYTES_LIMIT = 1 << 20

#: How long a stop waits for held clients to receive their 503.
DRAIN_TIMEOUT = 2.0

#: What TLS offers over ALPN when the wrapped factory names nothing: the API
#: is HTTP/1.1 (its hijacked streams have no HTTP/2 form).
HTTP_11 = b"http/1.1"

#: What a held client is told when the daemon stops before it was ready.
SHUTTING_DOWN = "the daemon is shutting down before it became ready"

_log = Logger()


def unavailable_response(message: str, *, head: bool = False) -> bytes:
    """
    An HTTP/1.1 503 with dockerd's error body C{{"message": ...}}.

    The Go client parses the message only when the content type is exactly
    C{application/json}.

    @param head: The request was C{HEAD} (the CLI's first C{/_ping}): the
        headers are the same, the body is left out as HTTP requires.
    """
    body = json.dumps({"message": message}).encode() + b"\n"
    return (
        b"HTTP/1.1 503 Service Unavailable\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n"
        b"\r\n" + (b"" if head else body)
    )


def _producer(transport: object) -> IPushProducer:
    """
    A connection's transport as the producer of its bytes: TCP and unix
    transports are, and TLS passes the calls on to the one it wraps.
    """
    return cast("IPushProducer", transport)


def failure_message(failure: Failure) -> str:
    """
    Why a start failed, in one line: the error of the area that failed, not
    the C{FirstError} (with its traceback) that C{gatherResults} wraps it in.
    """
    while isinstance(failure.value, FirstError):
        failure = failure.value.subFailure
    return failure.getErrorMessage() or getattr(failure.type, "__name__", "error")


class _Gate:
    """
    The activation state all held connections of one endpoint share.

    @ivar failure: Why activation failed, once it has.
    """

    def __init__(self) -> None:
        self.open = False
        self.failure: Failure | None = None
        self.held: set[_HeldProtocol] = set()

    def activated(self, result: object) -> object:
        if isinstance(result, Failure):
            self.failure = result
        else:
            self.open = True
        for held in list(self.held):
            held.release()
        return result

    def drain(self, clock: IReactorTime) -> Deferred[None] | None:
        """
        The daemon is stopping: answer every held connection with a 503.

        @return: Fires once they are all closed (so the reactor has sent
            the answers before it shuts down), or after L{DRAIN_TIMEOUT};
            C{None} when nothing is held.
        """
        pending = set(self.held)
        if not pending:
            return None
        drained: Deferred[None] = Deferred()

        def finish() -> None:
            if timer.active():
                timer.cancel()
            if not drained.called:
                drained.callback(None)

        def lost(held: _HeldProtocol) -> None:
            pending.discard(held)
            if not pending:
                finish()

        timer = clock.callLater(DRAIN_TIMEOUT, finish)
        for held in list(pending):
            held.on_lost = lost
            held.refuse(SHUTTING_DOWN)
        return drained


class _HeldProtocol(Protocol):
    """
    A connection accepted before activation: its bytes are kept until the
    real protocol takes over, or it is answered with a 503 on timeout.
    """

    def __init__(
        self,
        gate: _Gate,
        factory: IProtocolFactory,
        address: IAddress,
        clock: IReactorTime,
        timeout: float,
    ) -> None:
        self._gate = gate
        self._factory = factory
        self._address = address
        self._clock = clock
        self._timeout = timeout
        self._received: list[bytes] = []
        self._held_bytes = 0
        self._paused = False
        self._inner: IProtocol | None = None
        self._timer: IDelayedCall | None = None
        self._done = False
        #: Called with this protocol when its connection is gone.
        self.on_lost: Callable[[_HeldProtocol], object] | None = None

    def connectionMade(self) -> None:
        self._gate.held.add(self)
        self._timer = self._clock.callLater(self._timeout, self._expire)
        if self._gate.failure is not None:
            self.release()

    def dataReceived(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.dataReceived(data)
        elif not self._done:
            self._received.append(data)
            self._held_bytes += len(data)
            if self._held_bytes >= HELD_BYTES_LIMIT and not self._paused:
                self._paused = True
                if self.transport is not None:
                    _producer(self.transport).pauseProducing()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._forget()
        if self._inner is not None:
            self._inner.connectionLost(reason)
        if self.on_lost is not None:
            self.on_lost(self)

    def _forget(self) -> None:
        self._done = True
        self._gate.held.discard(self)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _expire(self) -> None:
        self._timer = None
        self._refuse(
            "the daemon is still starting up: it did not become ready within"
            f" {self._timeout:g} seconds; try again later"
        )

    def refuse(self, message: str) -> None:
        """Answer with a 503 carrying C{message} and close, unless done."""
        if not self._done:
            self._refuse(message)

    def _refuse(self, message: str) -> None:
        self._forget()
        head = b"".join(self._received).startswith(b"HEAD ")
        self._received = []
        if self.transport is None:  # never connected: nothing to answer
            return
        self.transport.write(unavailable_response(message, head=head))
        self.transport.loseConnection()

    def release(self) -> None:
        """Activation happened: hand over to the real protocol, or refuse."""
        if self._done:
            return
        if self._gate.failure is not None:
            self._refuse(
                "the daemon failed to start: " + failure_message(self._gate.failure)
            )
            return
        self._forget()
        transport = self.transport
        if transport is None:  # never connected: nothing to hand over
            return
        inner = self._factory.buildProtocol(self._address)
        if inner is None:
            transport.loseConnection()
            return
        self._inner = inner
        if self._paused:
            # Reading resumes at the reactor's next turn, after the kept
            # bytes below; the real protocol may pause it again meanwhile.
            self._paused = False
            _producer(transport).resumeProducing()
        # Let the transport talk to the real protocol directly from now on,
        # so that code that later replaces the transport's protocol (a
        # hijacked attach) is not left behind a wrapper.
        for attribute in ("protocol", "wrappedProtocol"):
            if getattr(transport, attribute, None) is self:
                setattr(transport, attribute, inner)
        inner.makeConnection(transport)
        received, self._received = self._received, []
        self._held_bytes = 0
        for data in received:
            inner.dataReceived(data)


@implementer(IProtocolNegotiationFactory)
class _BufferingFactory(Factory):
    """
    Builds the real protocol once activated, a L{_HeldProtocol} before.

    TLS sits below this factory and asks it, at each handshake, which
    protocols to accept over ALPN (Twisted's select callback fails the
    handshake with an internal-error alert when the answer is empty); it
    answers for the factory it wraps.
    """

    def __init__(
        self,
        factory: IProtocolFactory,
        gate: _Gate,
        clock: IReactorTime,
        timeout: float,
    ) -> None:
        self._factory = factory
        self._gate = gate
        self._clock = clock
        self._timeout = timeout

    def doStart(self) -> None:
        self._factory.doStart()

    def doStop(self) -> None:
        # The port stopped listening: the daemon is stopping before it was
        # ready.  Whoever is still held (connected after the shutdown
        # trigger drained the others) is told so too.
        for held in list(self._gate.held):
            held.refuse(SHUTTING_DOWN)
        self._factory.doStop()

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        if addr is None:  # a reactor always gives one; the interface allows none
            return None
        if self._gate.open:
            return self._factory.buildProtocol(addr)  # type: ignore[return-value]
        return _HeldProtocol(
            self._gate, self._factory, addr, self._clock, self._timeout
        )

    def acceptableProtocols(self) -> list[bytes]:
        """The wrapped factory's ALPN protocols, or C{http/1.1}."""
        negotiating = IProtocolNegotiationFactory(self._factory, None)
        if negotiating is None:
            return [HTTP_11]
        return list(negotiating.acceptableProtocols())

    def __getattr__(self, name: str) -> Any:
        # Site's attributes (displayTracebacks, sessions...) stay reachable.
        return getattr(self._factory, name)


@implementer(IStreamServerEndpoint)
class ListenBufferEndpoint:
    """
    Wrap C{endpoint}: listen now, serve connections once C{activation} fires.

    @param endpoint: The endpoint that really listens.
    @param activation: Fires (with anything) when requests may be served,
        or fails when the daemon cannot start; its result is passed on
        unchanged, so several endpoints may share it.
    @param clock: Schedules the timeout.
    @param timeout: Seconds a connection may be held before it is answered
        with a 503.
    """

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        activation: Deferred[Any],
        clock: IReactorTime,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._endpoint = endpoint
        self._gate = _Gate()
        self._clock = clock
        self._timeout = timeout
        activation.addBoth(self._gate.activated)
        self._drain_registered = False

    @property
    def held(self) -> int:
        """How many connections are held now, waiting for activation."""
        return len(self._gate.held)

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """
        Listen on the wrapped endpoint with a buffering factory.

        When C{clock} is the reactor, a stop before activation first answers
        held clients with a 503 and lets the reactor send it (a C{before
        shutdown} trigger); otherwise they would get an empty reply.
        """
        if IReactorCore.providedBy(self._clock) and not self._drain_registered:
            self._drain_registered = True
            cast("IReactorCore", self._clock).addSystemEventTrigger(
                "before", "shutdown", self._gate.drain, self._clock
            )
        return self._endpoint.listen(
            _BufferingFactory(protocolFactory, self._gate, self._clock, self._timeout)
        )
