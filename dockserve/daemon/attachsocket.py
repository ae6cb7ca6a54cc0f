# -*- test-case-name: tests.daemon.test_attachsocket -*-
"""
conmon's attach socket as a L{dockserve.daemon.contracts.Stdio}.

The socket is C{SOCK_SEQPACKET}: each packet conmon sends is one byte
naming the pipe (stdin 1, stdout 2, stderr 3) and the data; each packet we
send is bytes for the container's stdin, which conmon reads 32 KiB at a
time (a longer packet would be cut). Nothing here blocks the reactor:
stdin waits in a buffer while conmon is not reading (a container that has
not started yet, or reads slowly), and the client that sends it is paused
past L{HIGH_WATER} bytes and resumed once they have gone, as TCP would.
The other way, a client that reads slowly stops our reading of the socket
(L{AttachSocket.pause_output}); conmon then waits on the full socket, and so
does the container's next write, instead of the daemon holding the output.
"""

import contextlib
import os
import socket
from collections import deque
from pathlib import Path
from typing import Any

from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from dockserve.daemon.contracts import OutputCallback, PushProducer

#: The most conmon reads from the socket at once (its CONN_SOCK_BUF_SIZE).
PACKET = 32 * 1024

#: Buffered stdin above which the client is paused.
HIGH_WATER = 256 * 1024


@implementer(IReadDescriptor, IWriteDescriptor)
class _Socket:
    """The reactor's view of the socket: readable for output, writable for stdin."""

    def __init__(self, sock: socket.socket, stdio: "AttachSocket") -> None:
        self.sock = sock
        self.stdio = stdio

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "attach"

    def doRead(self) -> None:
        try:
            packet = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            packet = b""
        if not packet:
            self.stdio.lost()
            return
        stream = packet[0] - 1
        if stream in (1, 2) and len(packet) > 1:
            self.stdio.output(stream, packet[1:])

    def doWrite(self) -> None:
        self.stdio.flush()

    def connectionLost(self, reason: Failure) -> None:  # noqa: ARG002
        self.stdio.lost()


@define
class AttachSocket:
    """A L{dockserve.daemon.contracts.Stdio} over conmon's attach socket and
    resize fifo (C{ctl}).
    """

    reactor: Any
    sock: socket.socket
    ctl_path: Path
    on_output: OutputCallback | None
    closed: Deferred[None] = field(factory=Deferred)
    _endpoint: _Socket | None = None
    _pending: deque[bytes] = field(factory=deque)
    _buffered: int = 0
    _writing: bool = False
    _close_after: bool = False
    _producer: PushProducer | None = None
    _paused: bool = False
    _output_paused: bool = False

    @classmethod
    def connect(
        cls, reactor: Any, base: Path, on_output: OutputCallback
    ) -> "AttachSocket":
        """
        Connect to C{<base>/attach} and read from it on C{reactor}.

        @raise OSError: No one listens there.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # A socket path must fit in 108 bytes: go through a descriptor
            # of the directory, whatever its length.
            directory = os.open(base, os.O_PATH | os.O_DIRECTORY)
            try:
                sock.connect(f"/proc/self/fd/{directory}/attach")
            finally:
                os.close(directory)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        stdio = cls(reactor, sock, base / "ctl", on_output)
        stdio._endpoint = _Socket(sock, stdio)
        reactor.addReader(stdio._endpoint)
        return stdio

    def output(self, stream: int, data: bytes) -> None:
        """A packet of the container's output (1 stdout, 2 stderr)."""
        if self.on_output is not None:
            self.on_output(stream, data)

    def lost(self) -> None:
        """The socket closed (conmon went, or we detached): the attach ends."""
        if self._endpoint is not None:
            self.reactor.removeReader(self._endpoint)
            self.reactor.removeWriter(self._endpoint)
            self._endpoint = None
            self.sock.close()
        self._pending.clear()
        self._buffered = 0
        self._resume()
        if not self.closed.called:
            self.closed.callback(None)

    def pause_output(self) -> None:
        """The client is slow: stop reading conmon's packets for now."""
        if self._endpoint is not None and not self._output_paused:
            self._output_paused = True
            self.reactor.removeReader(self._endpoint)

    def resume_output(self) -> None:
        """Read conmon's packets again."""
        if self._endpoint is not None and self._output_paused:
            self._output_paused = False
            self.reactor.addReader(self._endpoint)

    def set_stdin_producer(self, producer: PushProducer) -> None:
        """Pause C{producer} while too much of its stdin is waiting."""
        self._producer = producer
        if self._buffered > HIGH_WATER:
            self._pause()

    def write_stdin(self, data: bytes) -> None:
        """Queue C{data} for the container's stdin, in packets conmon takes."""
        if self._endpoint is None or self._close_after:
            return
        for start in range(0, len(data), PACKET):
            self._pending.append(data[start : start + PACKET])
        self._buffered += len(data)
        self.flush()

    def flush(self) -> None:
        """Send what conmon will take now; wait for the socket for the rest."""
        while self._pending and self._endpoint is not None:
            try:
                self.sock.send(self._pending[0])
            except BlockingIOError:
                break
            except OSError:
                # conmon is gone: the output side will see it too.
                self._pending.clear()
                self._buffered = 0
                break
            self._buffered -= len(self._pending.popleft())
        if self._endpoint is None:
            return
        if self._pending and not self._writing:
            self.reactor.addWriter(self._endpoint)
            self._writing = True
        elif not self._pending and self._writing:
            self.reactor.removeWriter(self._endpoint)
            self._writing = False
        if self._buffered > HIGH_WATER:
            self._pause()
        elif self._buffered <= HIGH_WATER // 2:
            self._resume()
        if not self._pending and self._close_after:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)

    def _pause(self) -> None:
        if self._producer is not None and not self._paused:
            self._paused = True
            self._producer.pauseProducing()

    def _resume(self) -> None:
        if self._producer is not None and self._paused:
            self._paused = False
            self._producer.resumeProducing()

    def close_stdin(self) -> None:
        """End of input, once what is buffered has been sent."""
        if self._endpoint is None or self._close_after:
            return
        self._close_after = True
        self.flush()

    def resize(self, height: int, width: int) -> None:
        """Tell conmon the terminal's size through its control fifo."""
        try:
            fd = os.open(self.ctl_path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            os.write(fd, f"1 {height} {width}\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)

    def detach(self) -> None:
        """Stop receiving output; the process goes on."""
        self.on_output = None
        self.lost()
