# -*- test-case-name: tests.api.test_streams -*-
"""
The container streams on the wire: multiplexed frames, and the hijacked
connection of attach and exec.

C{docker attach}, C{docker run} and C{docker exec} send C{Connection:
Upgrade}, C{Upgrade: tcp}; dockerd answers C{101 UPGRADED} and from then on
the connection is a raw byte pipe: the client's bytes are the process's
stdin, the process's output comes back raw (with a TTY) or in 8-byte
framed chunks (without). A client that does not ask to upgrade gets a
C{200} and the same stream (moby's C{hijack} in
C{daemon/server/router/container/container_routes.go}).

When the client half-closes its side (stdin reached end-of-file), the
process's stdin is closed and its output keeps flowing; with a TTY the
detach keys (ctrl-p ctrl-q unless the client names others) end the
stream and leave the process running.
"""

import contextlib
import struct
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IProtocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from dockserve.api.middleware import api_version
from dockserve.errors import InvalidParameter

#: The content types of the two wire formats.
RAW_STREAM = b"application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = b"application/vnd.docker.multiplexed-stream"

#: Docker's default detach sequence: ctrl-p ctrl-q.
DEFAULT_DETACH_KEYS = b"\x10\x11"

_CTRL_SPECIALS = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def frame(stream: int, data: bytes) -> bytes:
    """
    One chunk of a multiplexed stream: the stream byte (0 stdin, 1 stdout,
    2 stderr), three zero bytes, the big-endian length, the data.
    """
    return struct.pack(">BxxxL", stream, len(data)) + data


def parse_detach_keys(spec: str | None) -> bytes:
    """
    The byte sequence of a C{detachKeys} value such as C{ctrl-p,ctrl-q}
    (moby's C{term.ToBytes}); the default sequence for C{None} or empty.

    @raise InvalidParameter: For a key that is neither C{ctrl-X} nor a
        single character.
    """
    if not spec:
        return DEFAULT_DETACH_KEYS
    result = bytearray()
    for key in spec.split(","):
        lowered = key.strip().lower()
        if len(key) == 1:
            result.append(ord(key))
        elif lowered.startswith("ctrl-") and len(lowered) == 6:
            char = lowered[5]
            if "a" <= char <= "z":
                result.append(ord(char) - ord("a") + 1)
            elif char in _CTRL_SPECIALS:
                result.append(_CTRL_SPECIALS[char])
            else:
                raise InvalidParameter(f"Invalid detach keys ({spec}) provided")
        else:
            raise InvalidParameter(f"Invalid detach keys ({spec}) provided")
    return bytes(result)


class EscapeFilter:
    """
    Watch the client's keystrokes for the detach sequence (moby's
    C{term.EscapeProxy}): bytes that could begin it are held back until it
    is clear they do not; the whole sequence means detach.
    """

    def __init__(
        self,
        keys: bytes,
        on_data: Callable[[bytes], None],
        on_detach: Callable[[], None],
    ) -> None:
        self._keys = keys
        self._on_data = on_data
        self._on_detach = on_detach
        self._held = b""
        self._detached = False

    def feed(self, data: bytes) -> None:
        """The client sent C{data}."""
        if self._detached:
            return
        passed = bytearray()
        for byte in data:
            candidate = self._held + bytes([byte])
            if self._keys.startswith(candidate):
                self._held = candidate
                if candidate == self._keys:
                    self._held = b""
                    if passed:
                        self._on_data(bytes(passed))
                    self._detached = True
                    self._on_detach()
                    return
                continue
            passed += self._held + bytes([byte])
            self._held = b""
        if passed:
            self._on_data(bytes(passed))


@implementer(IProtocol, IHalfCloseableProtocol)
class _HalfCloseProxy:
    """
    Stands in for the socket's protocol so a half-close from the client
    reaches the hijacked stream instead of closing the whole connection;
    everything else goes to the protocol it replaces.
    """

    def __init__(self, original: Any, on_read_closed: Callable[[], None]) -> None:
        self._original = original
        self._on_read_closed = on_read_closed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)

    def dataReceived(self, data: bytes) -> None:
        self._original.dataReceived(data)

    def connectionLost(self, reason: Failure) -> None:
        self._original.connectionLost(reason)

    def readConnectionLost(self) -> None:
        self._on_read_closed()

    def writeConnectionLost(self) -> None:
        """We never half-close our side."""


def _install_half_close(transport: Any, on_read_closed: Callable[[], None]) -> bool:
    """
    Make the connection under C{transport} report the client's half-close:
    through TLS, its C{close_notify} (Go's C{CloseWrite}; the TLS layer
    passes it to a protocol that can half-close, server/tls.py); else the
    socket's end of file.

    @return: Whether it could.
    """
    lowest = transport
    while isinstance(lowest, ProtocolWrapper):
        if isinstance(lowest, TLSMemoryBIOProtocol):
            above = lowest.wrappedProtocol
            lowest.wrappedProtocol = _HalfCloseProxy(above, on_read_closed)
            return True
        lowest = lowest.transport
    original = getattr(lowest, "protocol", None)
    if original is None:
        return False
    lowest.protocol = _HalfCloseProxy(original, on_read_closed)
    return True


class PushProducer(Protocol):
    """A client's connection as a process's stdin sees it (L{Hijack})."""

    def pauseProducing(self) -> None:
        """Stop reading the client's bytes."""

    def resumeProducing(self) -> None:
        """Read them again."""


class OutputSource(Protocol):
    """What a hijacked stream's output comes from (an attach, an exec)."""

    def pause_output(self) -> None:
        """Hold the output back: the client reads slowly."""

    def resume_output(self) -> None:
        """Send the output again."""


class _OutputFlow:
    """
    The transport's producer once the connection is hijacked: when more
    output waits to be sent than the transport's buffer holds, the source
    is paused, and resumed when it has gone, so that a slow client holds
    the process back (as with dockerd) rather than the daemon holding its
    output.
    """

    def __init__(self) -> None:
        self.source: OutputSource | None = None
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True
        if self.source is not None:
            self.source.pause_output()

    def resumeProducing(self) -> None:
        self.paused = False
        if self.source is not None:
            self.source.resume_output()

    def stopProducing(self) -> None:
        """The connection is gone; L{Hijack.connection_lost} says so."""


class Hijack:
    """
    A connection taken over from HTTP: the process's output goes out, the
    client's bytes come in.

    @ivar tty: Output is raw; without a TTY it is framed.
    @ivar lost: Fires when the connection is gone, whoever closed it.
    """

    def __init__(self, transport: Any, *, tty: bool) -> None:
        self.tty = tty
        self.lost: Deferred[None] = Deferred()
        self.on_stdin: Callable[[bytes], None] = lambda _: None
        self.on_stdin_closed: Callable[[], None] = lambda: None
        self.flow = _OutputFlow()
        self._transport = transport
        self._closed = False
        self._closing = False
        #: Output held while the response head goes out on its own.
        self._held: list[bytes] | None = None

    def hold_after_head(self, reactor: Any) -> None:
        """
        Let the response head reach the client alone: output waits
        L{HEAD_START} seconds. The Docker SDK for Python reads the head
        through a buffered reader and then the stream from the raw socket,
        so whatever came in the same read as the head was lost (the whole
        replay of C{attach?logs=1&stream=0} of an exited container);
        dockerd's separate writes give the client the head first.
        """
        self._held = []
        reactor.callLater(HEAD_START, self._release)

    def _release(self) -> None:
        held, self._held = self._held, None
        if held and not self._closed:
            self._transport.write(b"".join(held))
        if self._closing:
            self._closing = False
            self.close()

    def set_output_source(self, source: OutputSource) -> None:
        """Pause C{source} whenever the client is behind (now, if it is)."""
        self.flow.source = source
        if self.flow.paused:
            source.pause_output()

    def write(self, stream: int, data: bytes) -> None:
        """Send one piece of the process's output."""
        if self._closed or not data:
            return
        out = data if self.tty else frame(stream, data)
        if self._held is not None:
            self._held.append(out)
            return
        self._transport.write(out)

    def close(self) -> None:
        """The stream ended: close the connection."""
        if self._closed:
            return
        if self._held is not None:
            self._closing = True  # after the held output
            return
        self._closed = True
        # A transport with a registered producer does not close until it is
        # unregistered: a stream that ended while its client was behind
        # would otherwise stay open for good.
        _unregister_producer(self._transport)
        self._transport.loseConnection()

    def pauseProducing(self) -> None:
        """Stop reading the client's bytes (the process's stdin is full)."""
        pause = getattr(self._transport, "pauseProducing", None)
        if pause is not None and not self._closed:
            pause()

    def resumeProducing(self) -> None:
        """Read the client's bytes again."""
        resume = getattr(self._transport, "resumeProducing", None)
        if resume is not None and not self._closed:
            resume()

    def data_received(self, data: bytes) -> None:
        """The client's bytes: the process's stdin."""
        if data:
            self.on_stdin(data)

    def read_closed(self) -> None:
        """The client half-closed its side."""
        self.on_stdin_closed()

    def connection_lost(self) -> None:
        """The connection is gone."""
        self._closed = True
        if not self.lost.called:
            self.lost.callback(None)


def _discard(*_: object) -> None:
    """Stand-in for the request's own writers once the connection is taken."""


def _unregister_producer(transport: Any) -> None:
    """Unregister C{transport}'s producer, if it has one."""
    with contextlib.suppress(RuntimeError):  # StringTransport: none registered
        transport.unregisterProducer()


def content_type(request: Request, *, tty: bool) -> bytes:
    """
    What a container stream is called (moby's rule for logs, attach and
    exec): framed output is C{application/vnd.docker.multiplexed-stream}
    from API 1.42 on; raw output, and any before 1.42, is
    C{application/vnd.docker.raw-stream}.
    """
    major, _, minor = api_version(request).partition(".")
    try:
        framed_name = (int(major), int(minor)) >= (1, 42)
    except ValueError:
        framed_name = True
    return MULTIPLEXED_STREAM if framed_name and not tty else RAW_STREAM


#: How long a hijacked stream's first output waits for its head to be read.
HEAD_START = 0.01


def hijack(request: Request, *, tty: bool) -> Hijack:
    """
    Take the connection over from C{request}: answer C{101 UPGRADED} (or
    C{200} to a client that did not ask to upgrade) and return the
    L{Hijack} that carries the stream from then on.

    @param tty: The output is raw; without, it is framed. An upgraded
        stream is named by L{content_type}; a C{200} one is always called
        raw, as dockerd calls it.
    """
    channel: Any = request.channel
    transport = channel.transport
    upgrade = request.requestHeaders.getRawHeaders(b"upgrade") or []
    if any(value.lower() == b"tcp" for value in upgrade):
        head = (
            b"HTTP/1.1 101 UPGRADED\r\nContent-Type: "
            + content_type(request, tty=tty)
            + b"\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        )
    else:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: " + RAW_STREAM + b"\r\n\r\n"
    stream = Hijack(transport, tty=tty)
    # Whatever the router or middleware does with this request from now on
    # must not reach the wire: the connection is no longer HTTP.
    request.write = _discard  # type: ignore[method-assign]
    request.finish = _discard  # type: ignore[method-assign]
    channel.setTimeout(None)
    buffered = b"".join(getattr(channel, "_dataBuffer", []))
    channel._dataBuffer = []
    original_lost = channel.connectionLost

    def connection_lost(reason: Failure) -> None:
        stream.connection_lost()
        original_lost(reason)

    channel.dataReceived = stream.data_received
    channel.connectionLost = connection_lost
    # HTTPChannel is the transport's producer (it stops reading while a
    # response waits to be written); from now on the stream's output is.
    _unregister_producer(transport)
    transport.registerProducer(stream.flow, True)
    _install_half_close(transport, stream.read_closed)
    transport.write(head)
    reactor = getattr(transport, "reactor", None)
    if reactor is not None:
        stream.hold_after_head(reactor)
    # HTTPChannel may have paused reading while it held pipelined bytes.
    resume = getattr(transport, "resumeProducing", None)
    if resume is not None:
        resume()
    if buffered:
        stream.data_received(buffered)
    return stream
