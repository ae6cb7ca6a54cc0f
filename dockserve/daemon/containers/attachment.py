# -*- test-case-name: tests.daemon.containers.test_service -*-
"""
A client's attach to a container's stdio, which may begin before the
container starts.

C{docker run} attaches before it starts the container, so that no output
is lost; the runtime can only attach to a container it has created. An
L{Attachment} is therefore made at once and connected to the runtime's
L{Stdio} when the container is created, with any stdin the client sent
meanwhile held until then.
"""

from typing import Any

from twisted.internet.defer import Deferred

from dockserve.daemon.contracts import OutputCallback, Stdio


class Attachment:
    """
    One attached client.

    @ivar tty: The container has a TTY: output is one raw stream.
    @ivar closed: Fires when the output ends (the container's process
        exited, the client detached, or the attach was refused).
    """

    def __init__(
        self,
        on_output: OutputCallback,
        *,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        stdin_once: bool = True,
    ) -> None:
        """
        @param stdin_once: The container's C{StdinOnce}: the client's end of
            input is the container's (C{docker run -i}); otherwise it only
            ends this attach, as dockerd does.
        """
        self.tty = tty
        self._stdin_once = stdin_once
        self.closed: Deferred[None] = Deferred()
        self._on_output = on_output
        self._stdin = stdin
        self._streams = {1} if stdout else set()
        if stderr:
            self._streams.add(2)
        self._stdio: Stdio | None = None
        self._pending: list[bytes] = []
        self._stdin_closed = False
        self._size: tuple[int, int] | None = None
        self._producer: Any = None
        self._output_paused = False
        self._draining = False
        self._replay: Any = None

    def output(self, stream: int, data: bytes) -> None:
        """The runtime's output callback: forward the streams asked for."""
        if self.closed.called:
            return
        if self.tty or stream in self._streams:
            self._on_output(1 if self.tty else stream, data)

    def connect(self, stdio: Stdio) -> None:
        """Join the runtime's stdio; deliver what was held."""
        if self.closed.called:
            stdio.detach()
            return
        self._stdio = stdio
        # The size first: a shell redraws on SIGWINCH and may drop what was
        # typed before it, so the client's first keys must come after.
        if self._size is not None:
            stdio.resize(*self._size)
        if self._producer is not None:
            stdio.set_stdin_producer(self._producer)
        if self._output_paused and not self._draining:
            stdio.pause_output()
        for data in self._pending:
            stdio.write_stdin(data)
        self._pending = []
        if self._producer is not None:
            self._producer.resumeProducing()
        if self._stdin_closed:
            if self._stdin_once and not self.tty:
                stdio.close_stdin()
            else:
                self.detach()
                return
        stdio.closed.addBoth(lambda _: self.finish())

    def set_stdin_producer(self, producer: Any) -> None:
        """
        The client's connection, paused until the container's stdio is
        there (and afterwards whenever the container's stdin is full), so
        that the daemon never holds more than a little of a client's input.
        """
        if not self._stdin:
            return
        self._producer = producer
        if self._stdio is None:
            producer.pauseProducing()
        else:
            self._stdio.set_stdin_producer(producer)

    def replaying(self, reader: Any) -> None:
        """
        C{reader} (a L{LogReader}) replays the log first (C{logs=1}): it
        is paused with the rest of the output.
        """
        self._replay = reader
        if self._output_paused:
            reader.pauseProducing()

    def pause_output(self) -> None:
        """The client reads slowly: hold the container's output back."""
        self._output_paused = True
        if self._replay is not None:
            self._replay.pauseProducing()
        if self._stdio is not None and not self._draining:
            self._stdio.pause_output()

    def drain(self) -> None:
        """
        Read the container's output from now on whatever the client's pace.

        Holding it back holds all of conmon, which writes to every attached
        client in turn: it would not see the container exit, and a stop or
        kill would wait for a client that does not read. What is left to
        read of a container being stopped is held in the daemon instead.
        """
        self._draining = True
        if self._stdio is not None:
            self._stdio.resume_output()

    def resume_output(self) -> None:
        """The client caught up."""
        self._output_paused = False
        if self._replay is not None:
            self._replay.resumeProducing()
        if self._stdio is not None:
            self._stdio.resume_output()

    def write_stdin(self, data: bytes) -> None:
        """Bytes the client typed; dropped unless it attached stdin."""
        if not self._stdin or self._stdin_closed:
            return
        if self._stdio is None:
            self._pending.append(data)
        else:
            self._stdio.write_stdin(data)

    def close_stdin(self) -> None:
        """
        The client half-closed (or went away): with C{StdinOnce} and no TTY
        the container reads end-of-file; otherwise the attach ends and the
        container's stdin stays open for the next client.
        """
        if not self._stdin or self._stdin_closed:
            return
        if not self._stdin_once or self.tty:
            if self._stdio is None:
                # What was typed still goes in, once connected; then it ends.
                self._stdin_closed = True
                return
            self.detach()
            return
        self._stdin_closed = True
        if self._stdio is not None:
            self._stdio.close_stdin()

    def resize(self, height: int, width: int) -> None:
        """Set the TTY size, now or when connected."""
        self._size = (height, width)
        if self._stdio is not None:
            self._stdio.resize(height, width)

    def detach(self) -> None:
        """The client went away or typed the detach keys; the process goes on."""
        if self._stdio is not None:
            self._stdio.detach()
        self.finish()

    def finish(self) -> None:
        """End the output stream (idempotent); a log replay stops with it."""
        if self._replay is not None and not self._replay.done.called:
            self._replay.done.cancel()
        if not self.closed.called:
            self.closed.callback(None)
