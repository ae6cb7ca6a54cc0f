# -*- test-case-name: tests.daemon.containers.test_service -*-
"""
A container's standard streams for clients: C{attach} (now, or at the next
start), C{resize} and C{logs}.
"""

from typing import Any

from twisted.internet.defer import (
    Deferred,
    succeed,
)
from twisted.logger import Logger

from dockserve.daemon.containers.attachment import Attachment
from dockserve.daemon.containers.logstream import LogReader
from dockserve.daemon.containers.table import (
    LOG_FILE,
    ContainerParts,
    _unless_cancelled,
)
from dockserve.daemon.contracts import (
    OutputCallback,
)
from dockserve.errors import (
    Conflict,
)

_log = Logger()


class ContainerStdio(ContainerParts):
    """Attach, resize and logs of the container service."""

    def attach(
        self,
        reference: str,
        on_output: OutputCallback,
        *,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        stream: bool,
        logs: bool = False,
    ) -> Attachment:
        """
        C{POST /containers/{id}/attach}: connect now if running, at the next
        start otherwise (C{docker run} and C{docker start -a} attach first);
        with C{logs}, what the container wrote so far comes first.
        """
        c = self._get(reference)
        attachment = Attachment(
            on_output,
            tty=bool(c.record.config.get("Tty")),
            stdin=stdin and bool(c.record.config.get("OpenStdin")),
            stdout=stdout,
            stderr=stderr,
            stdin_once=bool(c.record.config.get("StdinOnce")),
        )
        self._announce(c, "attach")
        replay: Deferred[None] = succeed(None)
        if logs:
            reader = LogReader(
                c.directory / LOG_FILE, attachment.output, reactor=self._reactor
            ).start()
            attachment.replaying(reader)
            # Cancelled when the attach ends first: not an error.
            replay = reader.done.addErrback(_unless_cancelled)
        if not stream:
            replay.addBoth(lambda _: attachment.finish())
            return attachment
        c.live.append(attachment)
        attachment.closed.addBoth(lambda _: c.live.remove(attachment))
        if c.draining:
            attachment.drain()
        if c.record.state.running and c.busy is None:
            self._connect(c, attachment)
        else:
            c.pending.append(attachment)
        return attachment

    def resize(self, reference: str, height: int, width: int) -> None:
        """
        C{POST /containers/{id}/resize}: the TTY size of the container.

        @raise Conflict: Not running.
        """
        c = self._get(reference)
        if not c.record.state.running:
            raise Conflict(f"Container {c.id} is not running")
        self._announce(c, "resize", height=str(height), width=str(width))
        if c.live:
            # The attached client's connection carries the resize.
            c.live[0].resize(height, width)
            return

        def resize(stdio: Any) -> None:
            stdio.resize(height, width)
            stdio.detach()

        self._runtime.attach(c.id, lambda _s, _d: None).addCallbacks(
            resize, lambda f: _log.failure("resize {id}", f, id=c.id)
        )

    def logs(
        self,
        reference: str,
        on_output: OutputCallback,
        *,
        stdout: bool,
        stderr: bool,
        since: float = 0.0,
        until: float = 0.0,
        tail: int | None = None,
        timestamps: bool = False,
        follow: bool = False,
    ) -> tuple[bool, LogReader]:
        """
        C{GET /containers/{id}/logs}: C{(tty, reader)}; the entries go to
        C{on_output} as C{(stream, bytes)} until C{reader.done} fires.
        """
        c = self._get(reference)
        reader = LogReader(
            c.directory / LOG_FILE,
            on_output,
            reactor=self._reactor,
            stdout=stdout,
            stderr=stderr,
            since=since,
            until=until,
            tail=tail,
            timestamps=timestamps,
            follow=follow,
            running=lambda: (
                c.record.state.running or c.record.state.status == "restarting"
            ),
        )
        return bool(c.record.config.get("Tty")), reader.start()
